"""Markdown tables and the curve plot of docs/estimators.md.

Both come from the gradient-estimator study's results.

Reads one or more OUT/results.json of
experiments/research/estimator_variance.py (e.g. one per config, run side by
side), prints the variance and training tables, and
draws all configs' curves into one figure:

  python -m experiments.research.estimator_report \
      /work/estimators_out/digits/results.json \
      /work/estimators_out/synthetic/results.json \
      --plot=docs/estimators_curves.png
"""

import argparse
import json

import numpy as np

import experiments
from experiments.research import estimator_variance

LABELS = {"pathwise": "pathwise", "sf_no_baseline": "score fn., b = 0",
          "sf_mean_baseline": "score fn., b = mean cost"}
POINTS = {"init": "initialization", "trained": "after pathwise training"}


def _cell(stats) -> str:
  """Tr Cov +- se (SNR)."""
  return (f"{stats['trace']:.4g} ± {stats['trace_se']:.2g} "
          f"({stats['snr']:.3g})")


def variance_table(name, variance) -> str:
  """One markdown table: rows (point, group), columns the three variants."""
  lines = [
      f"**configs/{name}.py** — tr Cov(g) ± standard error (SNR = "
      "‖E g‖ / √tr Cov) over the draws; ratio = tr Cov without baseline / "
      "with the mean-cost baseline.", "",
      "| parameters | group (size) | ‖E g‖ | " +
      " | ".join(LABELS.values()) + " | ratio b = 0 / b = mean |",
      "|---|---|---|---|---|---|---|"]
  for point, label in POINTS.items():
    v = variance[point]
    if point == "trained":
      label += f" ({v['step']} steps)"
    groups = [g for g in v["pathwise"] if g != "seconds"]
    for group in groups:
      s = {k: v[k][group] for k in LABELS}
      ratio = s["sf_no_baseline"]["trace"] / s["sf_mean_baseline"]["trace"]
      lines.append(
          f"| {label} | {group} ({s['pathwise']['num_parameters']}) | "
          f"{s['pathwise']['mean_norm']:.3g} | " +
          " | ".join(_cell(s[k]) for k in LABELS) + f" | {ratio:.3g} |")
    lines.append(
        f"| {label} | baseline b, draws | {v['baseline']:.2f} nats | "
        f"{v['pathwise'][groups[0]]['draws']} draws, batch "
        f"{v['batch_size']}, beta {v['beta']:g} | | | |")
  return "\n".join(lines)


def training_table(results) -> str:
  """Final validation ELBO and training seconds, mean ± sd over seeds."""
  lines = ["| config | estimator | steps | final validation ELBO (nats) | "
           "best validation ELBO | training seconds (compile excluded) | "
           "first epoch seconds (compile included) |",
           "|---|---|---|---|---|---|---|"]
  for name, r in results["configs"].items():
    for estimator in estimator_variance.ESTIMATORS:
      runs = [v for k, v in r["curves"].items()
              if k.startswith(estimator + "/")]
      final = np.array([x["validation_elbo"][-1] for x in runs])
      best = np.array([max(x["validation_elbo"]) for x in runs])
      secs = np.array([estimator_variance.steady_seconds(x)[-1]
                       for x in runs])
      first = np.array([x["train_seconds"][0] for x in runs])
      lines.append(
          f"| {name} | {estimator} | {runs[0]['step'][-1]} | "
          f"{final.mean():.2f} ± {final.std(ddof=1):.2f} | "
          f"{best.mean():.2f} ± {best.std(ddof=1):.2f} | "
          f"{secs.mean():.1f} ± {secs.std(ddof=1):.1f} | "
          f"{first.mean():.0f} ± {first.std(ddof=1):.0f} |")
  lines.append(f"\n({len(runs)} seeds; ± is the standard deviation over "
               "seeds.)")
  return "\n".join(lines)


def exact_validation_log_likelihood(name) -> float | None:
  """Mean exact log p(x) of a synthetic config's validation split, else None.

  The ceiling of the validation ELBO (by quadrature, `vib_flows.data`).
  """
  from vib_flows import data  # pylint: disable=g-import-not-at-top
  from vib_flows.app import config_files  # pylint: disable=g-import-not-at-top
  config = config_files.load(experiments.config_path(name))
  if not data.synthetic.is_synthetic_name(config.data.name):
    return None
  splits = data.load(config)
  return float(np.mean(data.synthetic.exact_log_likelihood(
      config.data.name, splits.validation.x)))


def merge(paths) -> dict:
  merged = {"configs": {}, "runs": []}
  for path in paths:
    with open(path) as f:
      r = json.load(f)
    merged["configs"].update(r["configs"])
    merged["runs"].append({k: r.get(k) for k in (
        "command", "machine", "total_seconds", "load_average_start",
        "load_average_end")})
  return merged


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("results", nargs="+")
  parser.add_argument("--plot", default="")
  args = parser.parse_args(argv)
  results = merge(args.results)
  for name, r in results["configs"].items():
    r["exact_validation_log_likelihood"] = exact_validation_log_likelihood(name)
    print(f"{name}: exact validation log p(x) = "
          f"{r['exact_validation_log_likelihood']}")
  for name, r in results["configs"].items():
    print(variance_table(name, r["variance"]) + "\n")
  print(training_table(results) + "\n")
  for run in results["runs"]:
    print(run)
  if args.plot:
    estimator_variance.plot_curves(results, args.plot)


if __name__ == "__main__":
  main()
