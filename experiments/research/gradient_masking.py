"""Is a classifier's robustness to FGSM real, or masked gradients?

FGSM takes one signed step of the size of the budget. A model whose loss is
curved within the budget can look robust to it while adversarial examples
exist a few smaller steps away (gradient masking; Athalye, Carlini & Wagner
2018). For finished VIB sweep runs (and the deterministic baseline) this
measures, on the first N test images and for each epsilon, the test
accuracy under

  FGSM          the sweep's attack (`vib_flows.adversarial.fgsm`)
  PGD           T signed steps of 2.5 epsilon / T (--pgd_steps, 20),
                projected into the budget (`vib_flows.adversarial.pgd`), a
                stronger attack
  PGD margin    the same steps up the logit gap instead of the
                cross-entropy (`loss="margin"`), whose gradient survives
                where p(y|x) rounds to 1
  PGD restarts  with --restarts=R > 1: PGD from x and from R - 1 random
                points of the budget, an image counted only if no start
                fools it (Madry et al. 2018): the paths from x may all lead
                into the same local optimum
  transfer      FGSM examples made on another model (--source, the
                deterministic baseline): a black-box attack, which a
                white-box attack should beat unless its gradients mislead
  random signs  the same budget in random directions: the floor of harm

each with the sweep's seed and 12 posterior samples, as the runs are
evaluated, and "no gradient": the share of images that FGSM leaves exactly
as they are, because the cross-entropy's gradient is 0 on every pixel (a
saturated softmax). A white-box FGSM accuracy well above the transfer or
PGD accuracy is the sign of masking; a PGD margin accuracy well below the
cross-entropy PGD's says that saturation hid the examples.

    python -m experiments.research.gradient_masking --images=1000
        --runs=results/mnist/vib/RUN/seed0,... (comma-separated run dirs)
        --source=results/mnist/vib/deterministic/seed0 [--pgd_steps=100]
        [--restarts=10]

Used in docs/results_mnist.md (robustness).
"""

import argparse
import os
import time

import keras
import ml_collections
import numpy as np
import tensorflow as tf

from experiments.sweeps import attack
from experiments.sweeps import baseline
from vib_flows import adversarial
from vib_flows import data as data_lib
from vib_flows.app import evaluate
from vib_flows.app import run_state
from vib_flows.app import workdir as workdir_lib

EPSILONS = (0.1, 0.2, 0.3)


def load_classifier(directory):
  """(classifier with `predict_proba`, test split, posterior samples)."""
  if os.path.exists(os.path.join(directory, baseline.MODEL_FILE)):
    config = ml_collections.ConfigDict(workdir_lib.read_config(directory))
    model = keras.saving.load_model(
        os.path.join(directory, baseline.MODEL_FILE))
    split = data_lib.load(config).test
    return attack.LogitsClassifier(model), split, 1
  state = run_state.restore_run(directory)
  return (state.model, state.splits.test,
          int(state.config.eval.vib_num_samples))


def unmoved_by_fgsm(model, split, num_samples, seed, batch_size=500):
  """The share of examples FGSM leaves unchanged: an all-zero gradient."""
  unmoved = 0
  for start in range(0, len(split.y), batch_size):
    stop = min(start + batch_size, len(split.y))
    x = split.x[start:stop]
    x_adv = adversarial.fgsm(model, x, split.y[start:stop], 0.1, seed,
                             num_samples, example_index=tf.range(start, stop))
    flat = np.reshape(x_adv.numpy() == x, (stop - start, -1))
    unmoved += int(np.sum(np.all(flat, axis=1)))
  return unmoved / len(split.y)


def accuracies(model, split, num_samples, source, seed, pgd_steps,
               restarts=1):
  """{column: {epsilon: value}} of one model on `split`.

  A "PGD, R restarts" column (cross-entropy) only when restarts R > 1.
  """
  clean = adversarial.robust_accuracy(model, split, (0.0,), num_samples,
                                      seed)[0.0]
  unmoved = unmoved_by_fgsm(model, split, num_samples, seed)
  table = {"clean": {e: clean for e in EPSILONS},
           "no gradient": {e: unmoved for e in EPSILONS},
           "FGSM": adversarial.robust_accuracy(model, split, EPSILONS,
                                               num_samples, seed),
           "PGD": adversarial.robust_accuracy(
               model, split, EPSILONS, num_samples, seed,
               pgd_steps=pgd_steps),
           "PGD margin": adversarial.robust_accuracy(
               model, split, EPSILONS, num_samples, seed,
               pgd_steps=pgd_steps, loss="margin")}
  if restarts > 1:
    table[f"PGD, {restarts} restarts"] = adversarial.robust_accuracy(
        model, split, EPSILONS, num_samples, seed, pgd_steps=pgd_steps,
        restarts=restarts)
  rng = np.random.default_rng(0)
  signs = rng.choice([-1.0, 1.0], size=split.x.shape).astype(np.float32)
  table["transfer FGSM"], table["random signs"] = {}, {}
  for epsilon in EPSILONS:
    if source is not None:
      crafted = adversarial.fgsm(source, split.x, split.y, epsilon, seed, 1)
      table["transfer FGSM"][epsilon] = adversarial.robust_accuracy(
          model, data_lib.Split(crafted.numpy(), split.y), (0.0,),
          num_samples, seed)[0.0]
    noisy = np.clip(split.x + epsilon * signs, 0.0, 1.0)
    table["random signs"][epsilon] = adversarial.robust_accuracy(
        model, data_lib.Split(noisy, split.y), (0.0,), num_samples,
        seed)[0.0]
  return table


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--runs", required=True,
                      help="comma-separated run directories")
  parser.add_argument("--source", default="",
                      help="the run whose FGSM examples are transferred")
  parser.add_argument("--images", type=int, default=1000)
  parser.add_argument("--pgd_steps", type=int, default=20,
                      help="PGD steps (of 2.5 epsilon / steps each)")
  parser.add_argument("--restarts", type=int, default=1,
                      help="PGD starts per image (> 1: a column of PGD "
                      "from x and restarts - 1 random starts)")
  args = parser.parse_args()
  seed = tf.constant(evaluate.TEST_SEED, tf.int32)
  source = None
  if args.source:
    source = load_classifier(args.source)[0]
  start = time.perf_counter()
  print(f"First {args.images} test images; accuracy (%); transfer from "
        f"{args.source or '-'}\n")
  restarts = (f"PGD, {args.restarts} restarts | " if args.restarts > 1
              else "")
  print(f"| run | epsilon | clean | no gradient | FGSM | "
        f"PGD ({args.pgd_steps} steps) | PGD margin ({args.pgd_steps} steps) "
        f"| {restarts}transfer FGSM | random signs |")
  print("|---|---|---|---|---|---|---|---|---|" + "---|" * bool(restarts))
  for directory in args.runs.split(","):
    model, split, num_samples = load_classifier(directory)
    split = data_lib.Split(split.x[:args.images], split.y[:args.images])
    table = accuracies(model, split, num_samples, source, seed,
                       args.pgd_steps, args.restarts)
    for epsilon in EPSILONS:
      cells = [f"{100 * table[column][epsilon]:.1f}"
               if epsilon in table[column] else "-"
               for column in table]
      print(f"| {directory} | {epsilon:g} | " + " | ".join(cells) + " |")
  print(f"\n{time.perf_counter() - start:.0f} s; "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}")


if __name__ == "__main__":
  main()
