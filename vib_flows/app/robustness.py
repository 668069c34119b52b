"""A classifier's test accuracy under the attacks that `config.eval` names.

  test_fgsm_accuracy_eps{eps:g}  accuracy on FGSM examples of budget eps, for
                                 each eps of eval.fgsm_epsilons (one signed
                                 step; Goodfellow et al. 2015, as Alemi et
                                 al. 2017, Sec. 4.2, report it)
  test_pgd_accuracy_eps{eps:g}   accuracy on PGD examples of budget eps, for
                                 each eps of eval.pgd_epsilons (T =
                                 eval.pgd_steps signed steps of 2.5 eps / T,
                                 projected into the budget; Madry et al.
                                 2018): the stronger attack, which sees
                                 through gradient masking; with
                                 eval.pgd_restarts = R > 1, from x and R - 1
                                 random starts, robust only if no start
                                 fools the classifier
  test_pgd_steps                 T of those PGD accuracies
  test_pgd_restarts              R of those PGD accuracies

All are fractions in [0, 1] of the split, taken with the seed and posterior
samples of the clean test accuracy, so epsilon 0 reproduces it
(`vib_flows.adversarial`).
"""

from typing import Any

import ml_collections
import tensorflow as tf

from vib_flows import adversarial

Metrics = dict[str, Any]
FGSM_KEY = "test_fgsm_accuracy_eps{:g}"
PGD_KEY = "test_pgd_accuracy_eps{:g}"
PGD_STEPS_KEY = "test_pgd_steps"
PGD_RESTARTS_KEY = "test_pgd_restarts"
# eval.pgd_steps of configs saved before the field existed.
DEFAULT_PGD_STEPS = 20
FGSM_PREFIX = FGSM_KEY[:-len("{:g}")]
PGD_PREFIX = PGD_KEY[:-len("{:g}")]
# The attacks: (the config field of their budgets, their metric key).
_ATTACKS = {"fgsm": ("fgsm_epsilons", FGSM_KEY),
            "pgd": ("pgd_epsilons", PGD_KEY)}


def epsilons(config: ml_collections.ConfigDict, attack: str) -> list[float]:
  """The budgets of `attack` ("fgsm" or "pgd") that config.eval names."""
  field, _ = _ATTACKS[attack]
  return [float(e) for e in (config.eval.get(field, ()) or ())]


def pgd_steps(config: ml_collections.ConfigDict) -> int:
  """eval.pgd_steps (DEFAULT_PGD_STEPS for configs saved before it)."""
  return int(config.eval.get("pgd_steps", DEFAULT_PGD_STEPS))


def pgd_restarts(config: ml_collections.ConfigDict) -> int:
  """eval.pgd_restarts (1, PGD from x alone, for configs saved before it)."""
  return int(config.eval.get("pgd_restarts", 1))


def _stale(metrics: Metrics, config: ml_collections.ConfigDict) -> bool:
  """`metrics` hold PGD accuracies of another step or start count than eval's.

  Accuracies recorded before restarts existed were taken from x alone (1).
  """
  return (PGD_STEPS_KEY in metrics
          and (int(metrics[PGD_STEPS_KEY]) != pgd_steps(config)
               or int(metrics.get(PGD_RESTARTS_KEY, 1))
               != pgd_restarts(config)))


def missing(metrics: Metrics,
            config: ml_collections.ConfigDict) -> dict[str, list[float]]:
  """{attack: the budgets of config.eval whose accuracy `metrics` lacks}.

  PGD accuracies taken with another number of steps or starts than
  eval.pgd_steps and eval.pgd_restarts are missing too.
  """
  stale_pgd = _stale(metrics, config)
  result = {}
  for attack, (_, key) in _ATTACKS.items():
    wanted = epsilons(config, attack)
    result[attack] = [e for e in wanted if key.format(e) not in metrics
                      or (attack == "pgd" and stale_pgd)]
  return result


def drop_stale(metrics: Metrics, config: ml_collections.ConfigDict) -> Metrics:
  """`metrics` less PGD accuracies of another step or start count."""
  if not _stale(metrics, config):
    return dict(metrics)
  return {k: v for k, v in metrics.items()
          if not (k.startswith(PGD_PREFIX)
                  or k in (PGD_STEPS_KEY, PGD_RESTARTS_KEY))}


def attack_metrics(classifier: Any, split: Any,
                   config: ml_collections.ConfigDict, num_samples: int,
                   seed: tf.Tensor,
                   budgets: dict[str, list[float]] | None = None) -> Metrics:
  """The accuracies under attack (module docstring) of one classifier.

  Args:
    classifier: a model with `predict_proba(x, num_samples, seed,
      example_index=...)` (a `models.VIB`).
    split: the evaluated `data.Split` (x in [0, 1], labels).
    config: its config (eval.batch_size, eval.pgd_steps, eval.pgd_restarts
      and, unless `budgets` is given, the budgets).
    num_samples: posterior samples S averaged in p(y|x).
    seed: int tensor [2], the seed of the clean test accuracy.
    budgets: {"fgsm": [...], "pgd": [...]}, the budgets to attack with;
      default: all of config.eval's.

  Returns:
    The metric keys of the module docstring for those budgets
    (test_pgd_steps and test_pgd_restarts when PGD ran).
  """
  if budgets is None:
    budgets = {attack: epsilons(config, attack) for attack in _ATTACKS}
  steps = {"fgsm": 0, "pgd": pgd_steps(config)}
  restarts = {"fgsm": 1, "pgd": pgd_restarts(config)}
  metrics = {}
  for attack, wanted in budgets.items():
    if not wanted:
      continue
    accuracies = adversarial.robust_accuracy(
        classifier, split, wanted, int(num_samples), seed,
        int(config.eval.batch_size), pgd_steps=steps[attack],
        restarts=restarts[attack])
    key = _ATTACKS[attack][1]
    metrics.update({key.format(e): a for e, a in accuracies.items()})
    if attack == "pgd":
      metrics[PGD_STEPS_KEY] = steps["pgd"]
      metrics[PGD_RESTARTS_KEY] = restarts["pgd"]
  return metrics
