"""Where a run's training blew up, and which term of the loss did it.

A run whose validation curve leaves its course (the MNIST VAE with RealNVP
couplings, from epoch 176 on) has, in its TensorBoard summaries, the
per-epoch means of the training loss and of its two terms (the KL term
log q0(z0|x) - sum_k log|det J_k| - log p(zK) and the reconstruction term
log p(x|zK)), and the same on the validation split. This finds the epochs
whose training -ELBO rose more than --jump nats above the median of the
--window epochs before it (a spike), and prints for the first one the terms
of the epochs around it:

    epoch | train -ELBO | train KL | train log p(x|zK) | val -ELBO | val KL

The -ELBO, not the trainer's loss: under a KL warm-up the loss weighs the KL
term by a beta that rises, and climbs while the model improves.

A spike carried by the KL term with the reconstruction term behind it is the
flow (or the encoder) sending zK far into the prior's tail; one carried by
the reconstruction term alone is the decoder.

    python -m experiments.research.loss_spikes \
        --runs=results/mnist/vae/real_nvp4/seed0

Used in docs/results_mnist.md (the RealNVP row).
"""

import argparse

import numpy as np

from experiments.sweeps import run_history

# Summary tag -> the column it is printed as (the ELBO negated: nats of loss,
# not weighted by the KL warm-up's beta as "train/loss" is).
TERMS = {"train/elbo": "train -ELBO", "train/kl": "train KL",
         "train/reconstruction": "train log p(x|zK)",
         "validation/elbo": "val -ELBO", "validation/kl": "val KL"}
_NEGATED = ("train/elbo", "validation/elbo")


def spikes(train_loss: np.ndarray, window: int, jump: float) -> list[int]:
  """The epochs (from 1) whose training -ELBO is a spike.

  Args:
    train_loss: the per-epoch mean training -ELBO [epochs].
    window: how many epochs before an epoch form its reference (the first
      `window` epochs, which have fewer before them, are never spikes).
    jump: nats above the reference's median that make a spike.

  Returns:
    Epoch numbers e with train_loss[e-1] > median(train_loss[e-1-window :
    e-1]) + jump.
  """
  found = []
  for i in range(window, len(train_loss)):
    if train_loss[i] > np.median(train_loss[i - window:i]) + jump:
      found.append(i + 1)
  return found


def epoch_table(run_dir: str) -> tuple[list[int], dict[str, list[float]]]:
  """(epoch numbers, {term: per-epoch value}) of one run, from its summaries.

  Epoch e ends at step e * s, s being the first epoch's last step; terms a
  run did not write are left out.
  """
  found = run_history.scalars(run_dir, list(TERMS))
  steps = sorted(found["train/elbo"])
  if not steps:
    raise ValueError(f"{run_dir} has no train/elbo summaries.")
  per_epoch = steps[0]
  epochs = [step // per_epoch for step in steps]
  return epochs, {
      TERMS[tag]: [(-1.0 if tag in _NEGATED else 1.0)
                   * found[tag].get(step, np.nan) for step in steps]
      for tag in TERMS if found[tag]}


def report(run_dir: str, window: int = 10, jump: float = 10.0,
           context: int = 3) -> str:
  """The module docstring's report of one run, as text."""
  epochs, terms = epoch_table(run_dir)
  train = terms[TERMS["train/elbo"]]
  found = spikes(np.asarray(train), window, jump)
  lines = [f"{run_dir}: {len(epochs)} epochs"]
  if not found:
    lines.append(f"no spike (no epoch {jump:g} nats above the median of "
                 f"the {window} before it)")
    return "\n".join(lines)
  first = found[0]
  index = epochs.index(first)
  reference = np.median(train[index - window:index])
  lines.append(
      f"first spike: epoch {first}, train -ELBO "
      f"{train[index]:.1f} against a median of "
      f"{reference:.1f} over the {window} epochs before; "
      f"{len(found)} spike epochs: {', '.join(map(str, found))}")
  names = list(terms)
  lines.append("epoch | " + " | ".join(names))
  for i in range(max(0, index - context), min(len(epochs),
                                                index + context + 1)):
    lines.append(f"{epochs[i]} | " + " | ".join(
        f"{terms[name][i]:.1f}" for name in names))
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--runs", required=True,
                      help="Comma-separated run directories "
                      "(DIR/config/seedK).")
  parser.add_argument("--window", type=int, default=10)
  parser.add_argument("--jump", type=float, default=10.0)
  parser.add_argument("--context", type=int, default=3,
                      help="Epochs shown on each side of the first spike.")
  args = parser.parse_args()
  for run_dir in args.runs.split(","):
    print(report(run_dir, args.window, args.jump, args.context))
    print()


if __name__ == "__main__":
  main()
