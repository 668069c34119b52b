"""The markdown tables of a sweep's results (DIR/results.md).

VAE sweeps: -ELBO, -log p(x) (importance weighted), KL, train -ELBO, active
units, best epoch, training time and the largest log-det error per
configuration, nats per image, mean ± std over seeds. The VIB sweep: accuracy,
error, cross-entropy and the information bounds per beta, and the accuracy
under FGSM and PGD attacks per epsilon. Sweeps on data from
a known model (`grids.SYNTHETIC_SWEEPS`): the exact gap log p(x) - ELBO, the
share of the Gaussian's gap each posterior closes, the importance-weighted
gap, the ELBO, the exact log p(x), best epoch, training time and the log-det
error.
"""

from typing import Any

from experiments import host
from experiments.sweeps import grids
from vib_flows.app import robustness

Results = dict[str, Any]


def _pm(summary: dict[str, Any], key: str, scale: float = 1.0,
        digits: int = 2, negate: bool = False) -> str:
  """"mean ± std" of summary[key] (scaled, negated), or "-" if absent.

  The mean alone when one seed gave it: one value has no spread to show.
  """
  if key not in summary:
    return "-"
  s = summary[key]
  mean = -s["mean"] if negate else s["mean"]
  return _mean_std(scale * mean, scale * s["std"], s.get("n"), digits)


def _mean_std(mean: float, std: float, n: int | None, digits: int) -> str:
  """"mean ± std", or the mean alone for one value (n == 1)."""
  if n == 1:
    return f"{mean:.{digits}f}"
  return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _max_error(config: dict[str, Any]) -> str:
  errors = [r["log_det_max_error"] for r in config["runs"].values()
            if "log_det_max_error" in r]
  return f"{max(errors):.1e}" if errors else "-"


def _data_label(first: dict[str, Any]) -> str:
  """"the digits" or the data set's name, for the tables' captions."""
  name = str(first.get("data_name", "digits"))
  if name == "digits":
    return "the digits"
  return "MNIST" if "mnist" in name.lower() else name


def _earlier_ks(configs: list[dict[str, Any]]) -> list[str]:
  """The K's (as written in the keys) that re-tested runs were tested with."""
  prefix = grids.EARLIER_K_PREFIX
  return sorted({k[len(prefix):] for c in configs for k in c["summary"]
                 if k.startswith(prefix)}, key=int)


def _vae_table(configs: list[dict[str, Any]]) -> list[str]:
  """The VAE table's lines.

  Runs re-tested with another K also show the earlier K's -log p(x)
  (`run.reevaluate_importance_samples`), so the change is read off.
  """
  first = configs[0] if configs else {}
  earlier = _earlier_ks(configs)
  lines = [
      f"VAE on {_data_label(first)} (test set, "
      f"{first.get('num_importance_samples')} "
      f"importance samples; {first.get('num_epochs')} epochs, KL warm-up "
      f"{first.get('warmup_steps')} steps, best validation checkpoint; "
      f"mean ± std over seeds; nats per image, lower is better)",
      "",
      "| posterior | -ELBO | -log p(x) (IW) | "
      + "".join(f"-log p(x), K = {k} before | " for k in earlier)
      + "KL | train -ELBO "
      "| active units | best validation -ELBO | validation -log p(x) (IW) "
      "| best epoch | train time (s) | log-det error | seeds |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|"
      + "---|" * len(earlier),
  ]
  for c in configs:
    s = c["summary"]
    lines.append(
        f"| {c['label']} | {_pm(s, 'test_elbo', negate=True)} "
        f"| {_pm(s, 'test_log_likelihood', negate=True)} "
        + "".join(f"| {_pm(s, grids.EARLIER_K_PREFIX + k, negate=True)} "
                  for k in earlier)
        + f"| {_pm(s, 'test_kl')} | {_pm(s, 'train_elbo', negate=True)} "
        f"| {_pm(s, 'active_units_zk', digits=1)} "
        f"| {_pm(s, 'best_validation_loss')} "
        f"| {_pm(s, 'validation_log_likelihood', negate=True)} "
        f"| {_pm(s, 'best_epoch', digits=0)} "
        f"| {_pm(s, 'train_seconds', digits=0)} "
        f"| {_max_error(c)} | {len(c['runs'])} |")
  return lines


def _vib_table(configs: list[dict[str, Any]]) -> list[str]:
  first = configs[0] if configs else {}
  patience = first.get("early_stopping_patience")
  stopping = (f"up to {first.get('num_epochs')} epochs, early stopping "
              f"patience {patience}" if patience
              else f"{first.get('num_epochs')} epochs")
  lines = [
      f"VIB on {_data_label(first)} (test set; accuracy from "
      f"{first.get('vib_num_samples')} posterior samples; {stopping}; "
      f"mean ± std over seeds; nats)",
      "",
      "| model | beta | accuracy (%) | error (%) | cross-entropy "
      "| I(Z;X) <= KL | I(Z;Y) >= H(Y) - CE | best epoch "
      "| train time (s) | seeds |",
      "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for c in configs:
    s = c["summary"]
    beta = f"{c['beta']:g}" if "beta" in c else "-"
    error = "-"
    if "test_accuracy" in s:
      acc = s["test_accuracy"]
      error = _mean_std(100 * (1 - acc["mean"]), 100 * acc["std"],
                        acc.get("n"), 2)
    lines.append(
        f"| {c['label']} | {beta} | {_pm(s, 'test_accuracy', 100)} "
        f"| {error} | {_pm(s, 'test_cross_entropy', digits=3)} "
        f"| {_pm(s, 'test_kl')} | {_pm(s, 'test_izy_lower', digits=3)} "
        f"| {_pm(s, 'best_epoch', digits=0)} "
        f"| {_pm(s, 'train_seconds', digits=0)} | {len(c['runs'])} |")
  return lines + _attack_tables(configs)


def _attack_tables(configs: list[dict[str, Any]]) -> list[str]:
  """Test accuracy (%) under FGSM, then under PGD, per epsilon."""
  steps = {int(c["summary"][robustness.PGD_STEPS_KEY]["mean"])
           for c in configs if robustness.PGD_STEPS_KEY in c["summary"]}
  restarts = {int(c["summary"][robustness.PGD_RESTARTS_KEY]["mean"])
              for c in configs if robustness.PGD_RESTARTS_KEY in c["summary"]}
  starts = (f"; from x and {'/'.join(str(r - 1) for r in sorted(restarts))} "
            "random starts, robust only if none fools it"
            if any(r > 1 for r in restarts) else "")
  pgd = (f"projected gradient descent (Madry et al. 2018; "
         f"{'/'.join(str(t) for t in sorted(steps))} signed steps of "
         f"2.5 epsilon / steps, projected into the budget{starts}; the "
         f"stronger attack, an FGSM accuracy far above it is gradient "
         f"masking)")
  return (_attack_table(configs, robustness.FGSM_PREFIX,
                        "the fast gradient sign attack (Goodfellow et al. "
                        "2015)")
          + _attack_table(configs, robustness.PGD_PREFIX, pgd))


def _attack_table(configs: list[dict[str, Any]], prefix: str,
                  attack: str) -> list[str]:
  """Test accuracy (%) under one attack, per epsilon (none: no lines)."""
  epsilons = sorted({float(k[len(prefix):]) for c in configs
                     for k in c["summary"] if k.startswith(prefix)})
  if not epsilons:
    return []
  lines = [
      "", f"Test accuracy (%) under {attack} of size epsilon on [0, 1] "
      "pixels; mean ± std over seeds:", "",
      "| model | " + " | ".join(f"eps = {e:g}" for e in epsilons)
      + " | seeds |",
      "|---|" + "---|" * len(epsilons) + "---|"]
  for c in configs:
    keys = [f"{prefix}{e:g}" for e in epsilons]
    cells = [_pm(c["summary"], key, 100) for key in keys]
    # The runs that have this attack's accuracies: not every run may.
    seeds = sorted((seed for seed, run in c["runs"].items()
                    if any(key in run for key in keys)),
                   key=lambda seed: (len(seed), seed))  # 2 before 10.
    lines.append(f"| {c['label']} | " + " | ".join(cells)
                 + f" | {', '.join(seeds) or '-'} |")
  return lines


def _share(summary: dict[str, Any]) -> str:
  """The gap share in percent, or "-" without one (no "-0" for rounding)."""
  if "gap_share" not in summary:
    return "-"
  share = summary["gap_share"]
  mean = round(100.0 * share["mean"])  # An int: never "-0".
  if share.get("n") == 1:
    return f"{mean:d}"
  return f"{mean:d} ± {100.0 * share['std']:.0f}"


def _synthetic_table(configs: list[dict[str, Any]]) -> list[str]:
  first = configs[0] if configs else {}
  decoder = ("the decoder fixed to the true network: the gap is the mean "
             "KL(q(z|x) || p(z|x))" if first.get("decoder") == "true"
             else "the decoder learned too")
  lines = [
      f"VAE on {first.get('data_name')} ({decoder}; fixed test set of the "
      f"known model, exact log p(x) by quadrature, IW estimate with "
      f"{first.get('num_importance_samples')} samples; "
      f"{first.get('num_epochs')} epochs of fresh training draws, best "
      f"validation checkpoint; mean ± std over seeds, the mean alone for one "
      f"seed; nats per example)",
      "",
      "| posterior | exact gap log p(x) - ELBO | Gaussian gap closed (%) "
      "| IW gap log p(x) - IWAE | -ELBO | exact -log p(x) | best epoch "
      "| train time (s) | log-det error | seeds |",
      "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for c in configs:
    s = c["summary"]
    lines.append(
        f"| {c['label']} | {_pm(s, 'test_exact_gap', digits=3)} "
        f"| {_share(s)} | {_pm(s, 'test_exact_iw_gap', digits=3)} "
        f"| {_pm(s, 'test_elbo', negate=True)} "
        f"| {_pm(s, 'test_exact_log_likelihood', negate=True)} "
        f"| {_pm(s, 'best_epoch', digits=0)} "
        f"| {_pm(s, 'train_seconds', digits=0)} "
        f"| {_max_error(c)} | {len(c['runs'])} |")
  return lines


def _protocol_table(configs: list[dict[str, Any]]) -> list[str]:
  lines = [
      f"VAE on the digits, training protocols (best validation -ELBO: "
      f"early stopping's single-sample criterion; validation and test "
      f"-log p(x) with "
      f"{configs[0].get('num_importance_samples') if configs else None} "
      f"importance samples, the validation one the selection criterion; "
      f"best validation checkpoint; mean ± std over seeds; nats per "
      f"image, lower is better)",
      "",
      "| protocol | best validation -ELBO | validation -log p(x) (IW) "
      "| test -ELBO | test -log p(x) (IW) "
      "| best epoch | epochs run | train time (s) | seeds |",
      "|---|---|---|---|---|---|---|---|---|",
  ]
  for c in configs:
    s = c["summary"]
    lines.append(
        f"| {c['label']} | {_pm(s, 'best_validation_loss')} "
        f"| {_pm(s, 'validation_log_likelihood', negate=True)} "
        f"| {_pm(s, 'test_elbo', negate=True)} "
        f"| {_pm(s, 'test_log_likelihood', negate=True)} "
        f"| {_pm(s, 'best_epoch', digits=0)} "
        f"| {_pm(s, 'epochs_run', digits=0)} "
        f"| {_pm(s, 'train_seconds', digits=0)} | {len(c['runs'])} |")
  return lines


def markdown(results: Results) -> str:
  """The markdown text of a results dict (`aggregate.write_results`)."""
  configs = results["configs"]
  if results["sweep"] in grids.VIB_SWEEPS:
    lines = _vib_table(configs)
  elif results["sweep"] in grids.SYNTHETIC_SWEEPS:
    lines = _synthetic_table(configs)
  elif results["sweep"] in grids.PROTOCOL_SWEEPS:
    lines = _protocol_table(configs)
  else:
    lines = _vae_table(configs)
  lines.append("")
  mixed = [c["name"] for c in configs if c.get("protocol_mismatches")]
  if mixed:
    lines.append(
        "WARNING: the runs of " + ", ".join(mixed) + " were trained with "
        "different configs (the config file changed between runs); see "
        "protocol_mismatches in results.json.")
    lines.append("")
  if results.get("command"):
    lines.append(f"Command: `{results['command']}`")
    lines.append("")
  lines.append(f"Machine: {host.summary(results['machine'])}.")
  lines.append("")
  return "\n".join(lines)
