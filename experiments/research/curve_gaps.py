"""How far apart two rows' validation curves are, epoch by epoch.

The MNIST VAE sweep's picture (validation_curves.png) draws each row's
validation -ELBO (one posterior sample per image) by epoch, the mean over its
seeds. For pairs of rows A and B of a finished sweep (results.json), this
prints from the mean curves:

  below from      the first epoch from which A's curve stays below B's to the
                  last epoch both reached ("-": never for good)
  share below     the fraction of the epochs from --from_epoch on where A < B
  mean gap        the mean of B - A over those epochs (nats; > 0: A lower)
  p10 / p90       the 10th and 90th percentiles of B - A over them

and for every row how fast its curve still falls at the end: the
least-squares slope over its last --tail_epochs epochs, in nats per 100
epochs (negative: still falling).

    python -m experiments.research.curve_gaps --workdir=results/mnist/vae
        --pairs=iaf4:none,sylvester_orthogonal4:none,iaf4:sylvester_orthogonal4

Used in docs/results_mnist.md (the validation curves).
"""

import argparse
import os

import numpy as np

from experiments.sweeps import aggregate


def mean_curves(workdir: str) -> dict[str, np.ndarray]:
  """{row: its mean validation loss by epoch (the epochs all seeds ran)}."""
  results = aggregate.read_json(os.path.join(workdir, "results.json"))
  curves = {}
  for config in results["configs"]:
    losses = [run["validation_loss"] for run in config["runs"].values()
              if run.get("validation_loss")]
    if losses:
      length = min(len(v) for v in losses)
      curves[config["name"]] = np.mean([v[:length] for v in losses], axis=0)
  return curves


def compare(a: np.ndarray, b: np.ndarray, from_epoch: int) -> dict[str, float]:
  """The statistics of the module docstring for curves a and b [epochs]."""
  length = min(len(a), len(b))
  gap = b[:length] - a[:length]  # > 0 where a is lower.
  above = np.flatnonzero(gap <= 0)
  # Epochs count from 1; "below from" is the epoch after the last one where
  # a was not below (nan if a is not below at the last epoch).
  below_from = (1 if above.size == 0 else
                float(above[-1] + 2) if above[-1] + 1 < length else np.nan)
  tail = gap[from_epoch - 1:]
  return {"epochs": length, "below_from": below_from,
          "share_below": float(np.mean(tail > 0)),
          "mean_gap": float(np.mean(tail)),
          "p10": float(np.percentile(tail, 10)),
          "p90": float(np.percentile(tail, 90))}


def final_slope(curve: np.ndarray, tail_epochs: int) -> float:
  """Least-squares slope of the last `tail_epochs` values, per 100 epochs."""
  tail = curve[-tail_epochs:]
  return 100.0 * float(np.polyfit(np.arange(len(tail)), tail, 1)[0])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="results/mnist/vae")
  parser.add_argument("--pairs", default="iaf4:none")
  parser.add_argument("--from_epoch", type=int, default=25)
  parser.add_argument("--tail_epochs", type=int, default=50)
  args = parser.parse_args()
  curves = mean_curves(args.workdir)
  print(f"validation curves of {args.workdir} (mean over seeds); statistics "
        f"over the epochs from {args.from_epoch} on")
  print("| A | B | epochs | A below B from epoch | share below (%) "
        "| mean B - A | p10 | p90 |")
  print("|---|---|---|---|---|---|---|---|")
  for pair in args.pairs.split(","):
    name_a, name_b = pair.split(":")
    missing = [n for n in (name_a, name_b) if n not in curves]
    if missing:
      raise SystemExit(f"No validation curve for {missing} in "
                       f"{args.workdir}/results.json; rows: {sorted(curves)}")
    s = compare(curves[name_a], curves[name_b], args.from_epoch)
    below = "-" if np.isnan(s["below_from"]) else f"{s['below_from']:.0f}"
    print(f"| {name_a} | {name_b} | {s['epochs']} | {below} "
          f"| {100 * s['share_below']:.0f} | {s['mean_gap']:.2f} "
          f"| {s['p10']:.2f} | {s['p90']:.2f} |")
  print(f"\n| row | epochs | validation -ELBO at the end | slope over the "
        f"last {args.tail_epochs} epochs (nats per 100 epochs) |")
  print("|---|---|---|---|")
  for name, curve in curves.items():
    print(f"| {name} | {len(curve)} | {curve[-1]:.2f} "
          f"| {final_slope(curve, args.tail_epochs):.2f} |")


if __name__ == "__main__":
  main()
