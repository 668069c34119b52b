"""Collecting a sweep's runs: mean +- std over seeds, protocol check, results.*.

`write_results` reads DIR/<config>/seed<k>/metrics.json and writes
  DIR/results.json   every run's metrics and the mean +- std over seeds;
  DIR/results.md     the markdown tables (`experiments.sweeps.markdown`);
  DIR/information_plane.png   (VIB) I(Z;X) upper vs I(Z;Y) lower bound.
Sweeps on data from a known model also get, per configuration, the share of
the Gaussian posterior's exact gap that it closes (`add_gap_shares`).
Seeds of one configuration trained with different configs (the config file
changed between invocations) are listed in `protocol_mismatches`.
"""

from collections.abc import Sequence
import json
import os
from typing import Any

import ml_collections
import numpy as np

from experiments import host
from experiments.sweeps import grids
from experiments.sweeps import markdown
from vib_flows.app import plots
from vib_flows.app import robustness
from vib_flows.app import workdir as workdir_lib

SUMMARY_KEYS = ("test_elbo", "test_log_likelihood", "test_kl",
                "test_reconstruction", "test_accuracy", "test_cross_entropy",
                "test_izy_lower", "train_seconds", "eval_seconds",
                "best_epoch", "epochs_run", "log_det_max_error",
                "train_elbo", "train_log_likelihood", "train_cross_entropy",
                "train_kl", "active_units_z0", "active_units_zk",
                "encoder_scale_mean", "aggregate_std_z0", "aggregate_std_zk",
                "log_det_mean_abs", "test_exact_log_likelihood",
                "test_exact_gap", "test_exact_iw_gap",
                "best_validation_loss", "validation_elbo",
                "validation_log_likelihood")
# Sections / train fields that may differ between the seeds of one
# configuration (how a run is executed, not what it learns).
_NOT_PROTOCOL = ("seed", "runtime", "export", "eval")
_NOT_PROTOCOL_TRAIN = ("overwrite", "checkpoint_every_steps", "jit_compile")


def read_json(path: str) -> Any:
  """The parsed contents of the JSON file at `path`."""
  with open(path) as f:
    return json.load(f)


def mean_std(values: Sequence[float]) -> dict[str, float]:
  """{"mean", "std" (sample std, ddof=1; 0 for one value), "n"}."""
  values = np.asarray(values, np.float64)
  std = float(values.std(ddof=1)) if values.size > 1 else 0.0
  return {"mean": float(values.mean()), "std": std, "n": int(values.size)}


def best_validation_loss(run: dict[str, Any]) -> float | None:
  """The lowest validation loss of a run's epochs (the selection criterion).

  The trainer keeps the weights of that epoch (`run_state.State.keep_best`); for
  a VAE the validation loss is -ELBO (beta = 1) on one posterior sample per
  example. None for runs without a per-epoch validation history.
  """
  losses = run.get("validation_loss")
  if not losses:
    return None
  return float(min(losses))


# Accuracies under attack, one key per budget (`vib_flows.app.robustness`).
ATTACK_PREFIXES = {"FGSM": robustness.FGSM_PREFIX,
                   "PGD": robustness.PGD_PREFIX}


def summarize(runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
  """`mean_std` over the runs of every SUMMARY_KEYS number they hold.

  best_validation_loss is derived from each run's validation history.
  """
  summary = {}
  runs = {seed: dict(r, best_validation_loss=best_validation_loss(r))
          for seed, r in runs.items()}
  # Accuracies under attack: one key per epsilon the runs were tested at;
  # the bounds of earlier K's of re-tested runs.
  attacked = sorted({k for r in runs.values() for k in r
                     if k.startswith(tuple(ATTACK_PREFIXES.values()))
                     or k in (robustness.PGD_STEPS_KEY,
                              robustness.PGD_RESTARTS_KEY)
                     or k.startswith(grids.EARLIER_K_PREFIX)})
  for key in (*SUMMARY_KEYS, *attacked):
    values = [r[key] for r in runs.values()
              if isinstance(r.get(key), (int, float))
              and not isinstance(r.get(key), bool)]
    if values:
      summary[key] = mean_std(values)
  return summary


def write_results(sweep: str, workdir: str, seeds: int, epochs: int = 0,
                  importance_samples: int = 0,
                  only: Sequence[str] | None = None,
                  base_config: ml_collections.ConfigDict | None = None,
                  command: str | None = None,
                  first_seed: int = 0,
                  settings: dict[str, Any] | None = None) -> dict[str, Any]:
  """Collects DIR/<config>/seed<k>/metrics.json into results.json / .md.

  Args: as `experiments.sweeps.run.run_sweep`.

  Returns:
    The results dict: sweep, seeds, command, machine (`host.describe`) and
    configs, one per grid entry: the entry, its runs {seed: metrics}, summary
    {key: mean_std}, protocol_mismatches and the protocol fields the tables
    print (num_epochs, warmup_steps, ...).
  """
  configs = []
  for entry in grids.grid(sweep, only):
    config = grids.make_config(entry, 0, epochs, importance_samples,
                               base_config, settings)
    runs = {}
    for seed in range(first_seed, first_seed + seeds):
      path = os.path.join(grids.run_dir(workdir, entry["name"], seed),
                          "metrics.json")
      if os.path.exists(path):
        runs[str(seed)] = read_json(path)
    mismatches = protocol_mismatches(workdir, entry["name"],
                                     [int(k) for k in runs])
    configs.append(dict(
        entry, protocol_mismatches=mismatches,
        num_epochs=int(config.train.num_epochs),
        warmup_steps=int(config.loss.warmup_steps),
        early_stopping_patience=int(config.train.early_stopping_patience),
        num_importance_samples=int(config.eval.num_importance_samples),
        vib_num_samples=int(config.eval.vib_num_samples),
        data_name=str(config.data.name), decoder=str(config.model.decoder),
        runs=runs, summary=summarize(runs)))
  add_gap_shares(configs)
  results = {"sweep": sweep, "seeds": seeds, "first_seed": first_seed,
             "command": command,
             "machine": host.describe(), "configs": configs}
  workdir_lib.write_json_atomic(os.path.join(workdir, "results.json"), results)
  save_sweep_figures(sweep, workdir, configs)
  if sweep == "vib_digits":
    points = information_plane_points(configs)
    if points:
      plots.save_information_plane(
          points, os.path.join(workdir, "information_plane.png"),
          levels=information_plane_levels(configs))
  tmp = os.path.join(workdir, ".results.md.tmp")
  with open(tmp, "w") as f:
    f.write(markdown.markdown(results))
  os.replace(tmp, os.path.join(workdir, "results.md"))
  return results


# The validation curves' y axis spans the epochs from this one on: the
# first epochs fall by 90 nats, the rows differ by about one.
VALIDATION_CURVES_FROM_EPOCH = 20


def validation_curves(configs: Sequence[dict[str, Any]]
                      ) -> list[dict[str, Any]]:
  """Per configuration: its runs' validation losses by epoch (common length).

  The runs of one configuration may stop early at different epochs; the
  curve covers the epochs every run reached.
  """
  curves = []
  for c in configs:
    losses = [r["validation_loss"] for r in c["runs"].values()
              if r.get("validation_loss")]
    if not losses:
      continue
    length = min(len(v) for v in losses)
    curves.append({"label": c["label"], "x": np.arange(1, length + 1),
                   "y": [v[:length] for v in losses]})
  return curves


def robustness_curves(configs: Sequence[dict[str, Any]]
                      ) -> list[dict[str, Any]]:
  """Per configuration and attack: its test accuracy (%) by epsilon.

  FGSM solid, PGD dashed, in the configuration's colour; the label names the
  attack when PGD accuracies are there.
  """
  curves = []
  with_pgd = any(k.startswith(robustness.PGD_PREFIX) for c in configs
                 for k in c["summary"])
  for index, c in enumerate(configs):
    for attack, prefix in ATTACK_PREFIXES.items():
      keys = sorted((float(k[len(prefix):]), k) for k in c["summary"]
                    if k.startswith(prefix))
      seeds = [[100 * r[k] for _, k in keys] for r in c["runs"].values()
               if keys and all(k in r for _, k in keys)]
      if seeds:
        curves.append({
            "label": f"{c['label']}, {attack}" if with_pgd else c["label"],
            "x": [e for e, _ in keys], "y": seeds, "color": f"C{index % 10}",
            "linestyle": "--" if attack == "PGD" else "-"})
  return curves


def save_sweep_figures(sweep: str, workdir: str,
                       configs: Sequence[dict[str, Any]]) -> None:
  """The MNIST sweeps' pictures: validation curves; accuracy under attack.

  vae_mnist: DIR/validation_curves.png (validation -ELBO, one posterior
  sample per image, by epoch; the y axis spans the epochs from
  VALIDATION_CURVES_FROM_EPOCH on). VIB sweeps: DIR/robustness.png (test
  accuracy under the fast gradient sign attack, and PGD, by epsilon), once
  the runs have it.
  """
  if sweep == "vae_mnist":
    curves = validation_curves(configs)
    if curves:
      plots.save_curves(
          curves, os.path.join(workdir, "validation_curves.png"),
          "Validation -ELBO by epoch (mean over seeds, band: min-max)",
          "epoch", "validation -ELBO (nats, 1 sample)",
          y_from_x=VALIDATION_CURVES_FROM_EPOCH)
  elif sweep in grids.VIB_SWEEPS:
    curves = robustness_curves(configs)
    if curves:
      plots.save_curves(
          curves, os.path.join(workdir, "robustness.png"),
          "Test accuracy under attack (FGSM; PGD dashed)"
          if any(c["linestyle"] == "--" for c in curves)
          else "Test accuracy under the fast gradient sign attack",
          "epsilon (pixels in [0, 1])", "test accuracy (%)")


def add_gap_shares(configs: Sequence[dict[str, Any]],
                   gaussian: str = "none") -> None:
  """Adds summary["gap_share"]: the share of the Gaussian's gap closed.

  With g_G the mean exact gap log p(x) - ELBO over the seeds of the
  configuration named `gaussian` (no flow) and g_k a configuration's gap at
  seed k, the share at seed k is 1 - g_k / g_G; its mean over seeds is
  1 - mean(g) / g_G (1: the flow closes the whole gap, 0: no better than the
  Gaussian, < 0: worse), its std the spread of the flow's seeds. Nothing is
  added without finished Gaussian runs (or without exact gaps: real data).

  Args:
    configs: the configs of `write_results` (entry, runs, summary), updated in
      place.
    gaussian: the name of the no-flow configuration.

  Raises:
    ValueError: the Gaussian's mean gap is not positive (nothing to close:
      the exact likelihood or the ELBO is wrong).
  """
  reference = next((c for c in configs if c["name"] == gaussian), None)
  if reference is None or "test_exact_gap" not in reference["summary"]:
    return
  gaussian_gap = reference["summary"]["test_exact_gap"]["mean"]
  if not gaussian_gap > 0:
    raise ValueError(
        f"The Gaussian posterior's mean exact gap is {gaussian_gap}; an ELBO "
        "is never above log p(x), so the gap must be positive.")
  for c in configs:
    gaps = [r["test_exact_gap"] for r in c["runs"].values()
            if isinstance(r.get("test_exact_gap"), (int, float))]
    if gaps:
      c["summary"]["gap_share"] = mean_std(
          [1.0 - gap / gaussian_gap for gap in gaps])


def _protocol(config_json: dict[str, Any]) -> dict[str, Any]:
  """The learning part of a run's config.json (what must match across seeds).

  Fields that a config.json written by an older vib_flows lacks count as the
  value that gave its run's behaviour (`workdir.with_absent_defaults`).
  """
  config_json = workdir_lib.with_absent_defaults(config_json)
  protocol = {k: v for k, v in config_json.items() if k not in _NOT_PROTOCOL}
  protocol["train"] = {k: v for k, v in config_json.get("train", {}).items()
                       if k not in _NOT_PROTOCOL_TRAIN}
  return protocol


def protocol_mismatches(workdir: str, name: str,
                        seeds: Sequence[int]) -> list[tuple[int, list[str]]]:
  """Seeds of configuration `name` whose config.json differs from the first's.

  Returns:
    Sorted list of (seed, differing top-level sections).
  """
  first, found = None, []
  for seed in seeds:
    path = os.path.join(grids.run_dir(workdir, name, seed), "config.json")
    if not os.path.exists(path):
      continue
    protocol = _protocol(read_json(path))
    if first is None:
      first = protocol
    elif protocol != first:
      sections = sorted(k for k in set(first) | set(protocol)
                        if first.get(k) != protocol.get(k))
      found.append((seed, sections))
  return found


def information_plane_points(configs: Sequence[dict[str, Any]]
                             ) -> list[dict[str, Any]]:
  """Mean (I(Z;X) upper, I(Z;Y) lower) of each VIB configuration with a beta."""
  points = []
  for c in configs:
    s = c["summary"]
    if "beta" in c and "test_kl" in s and "test_izy_lower" in s:
      points.append({"beta": c["beta"], "izx": s["test_kl"]["mean"],
                     "izy": s["test_izy_lower"]["mean"], "label": c["label"]})
  return points


def information_plane_levels(configs: Sequence[dict[str, Any]]
                             ) -> dict[str, float]:
  """Dashed reference lines of the information plane.

  The deterministic baseline's H(Y) - CE (mean over seeds); its I(Z;X) is
  not bounded.
  """
  levels = {}
  for c in configs:
    if c["name"] == grids.DETERMINISTIC and "test_izy_lower" in c["summary"]:
      levels["deterministic MLP: H(Y) - CE"] = (
          c["summary"]["test_izy_lower"]["mean"])
  return levels
