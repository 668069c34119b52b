"""The accuracies under attack of the application (vib_flows.app.robustness).

The config fields that name the attacks (`config_checks`), the metrics of
`evaluate.test_metrics`, and which budgets a finished run lacks.
"""

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from vib_flows import data as data_lib
from vib_flows.app import config_checks
from vib_flows.app import evaluate
from vib_flows.app import model_builder
from vib_flows.app import robustness

SEED = tf.constant([3, 4], tf.int32)


def _vib_config(**eval_fields):
  return helpers.config("test", **helpers.VIB, **{
      f"eval.{field}": value for field, value in eval_fields.items()})


@pytest.mark.parametrize("field", ["fgsm_epsilons", "pgd_epsilons"])
@pytest.mark.parametrize("epsilons", [
    (-0.1,), (0.1, 1.5), (float("nan"),), (float("inf"),), ("0.1",), (True,)])
def test_bad_attack_epsilons_are_refused(field, epsilons):
  config = _vib_config(**{field: epsilons})
  with pytest.raises(ValueError, match=rf"^eval\.{field} must hold"):
    config_checks.validate(config)


@pytest.mark.parametrize("field", ["fgsm_epsilons", "pgd_epsilons"])
def test_attack_epsilons_are_refused_for_a_vae_and_levels(field):
  config = helpers.config("test")  # A VAE.
  config_checks.validate(config)
  config.eval[field] = (0.1,)
  with pytest.raises(ValueError, match=rf"eval\.{field}.*VIB"):
    config_checks.validate(config)
  config = _vib_config(**{field: (0.1,)})
  config.data.preprocess = "levels"
  with pytest.raises(ValueError, match=rf"eval\.{field}.*\[0, 1\]"):
    config_checks.validate(config)


@pytest.mark.parametrize("steps", [0, -3, 2.5, True, "20", None])
def test_bad_pgd_steps_are_refused(steps):
  # As a config.json or a config file without the default's types holds it.
  fields = _vib_config(pgd_epsilons=(0.1,)).to_dict()
  fields["eval"]["pgd_steps"] = steps
  config = ml_collections.ConfigDict(fields)
  with pytest.raises(ValueError, match=r"^eval\.pgd_steps must be an integer"):
    config_checks.validate(config)


def test_good_and_missing_attack_fields_pass():
  config_checks.validate(_vib_config(fgsm_epsilons=(0.0, 0.1, 1, 1.0)))
  config_checks.validate(_vib_config(fgsm_epsilons=()))
  config_checks.validate(_vib_config(pgd_epsilons=(0.1, 0.3), pgd_steps=1))
  # A config saved before the fields existed.
  old = _vib_config().to_dict()
  for field in ("fgsm_epsilons", "pgd_epsilons", "pgd_steps", "pgd_restarts"):
    del old["eval"][field]
  config_checks.validate(ml_collections.ConfigDict(old))


def test_test_metrics_report_the_accuracies_under_attack_of_a_vib():
  # Batches of 50: the examples' indices are their positions in the split.
  config = _vib_config(fgsm_epsilons=(0.0, 0.1), pgd_epsilons=(0.0, 0.1),
                       pgd_steps=3, batch_size=50)
  config_checks.validate(config)
  splits = data_lib.load(config)
  model = model_builder.build_model(config, splits.info)
  metrics = evaluate.test_metrics(model, splits, config)
  assert {"test_fgsm_accuracy_eps0", "test_fgsm_accuracy_eps0.1",
          "test_pgd_accuracy_eps0", "test_pgd_accuracy_eps0.1"} <= set(
              metrics)
  assert metrics["test_pgd_steps"] == 3
  # The clean accuracy's samples: epsilon 0 reproduces it.
  assert metrics["test_fgsm_accuracy_eps0"] == metrics["test_accuracy"]
  assert metrics["test_pgd_accuracy_eps0"] == metrics["test_accuracy"]
  assert 0.0 <= metrics["test_fgsm_accuracy_eps0.1"] <= 1.0
  assert 0.0 <= metrics["test_pgd_accuracy_eps0.1"] <= 1.0
  # Off by default (and for old configs without the field).
  plain = evaluate.test_metrics(model, splits, _vib_config())
  assert not any(key.startswith(("test_fgsm", "test_pgd")) for key in plain)


def test_the_configured_pgd_sees_through_what_fgsm_jumps_over():
  # The application's evaluation takes eval.pgd_steps steps: one FGSM step
  # of 0.2 misses the bump classifier's adversarial region, 20 steps find it.
  config = _vib_config(fgsm_epsilons=(0.2,), pgd_epsilons=(0.2,),
                       pgd_steps=20, batch_size=1)
  split = data_lib.Split(np.array([[0.5, 0.3], [0.5, 0.7]], "float32"),
                         np.array([0, 0]))
  metrics = robustness.attack_metrics(helpers.BumpClassifier(), split,
                                      config, 1, SEED)
  assert metrics == {"test_fgsm_accuracy_eps0.2": 1.0,
                     "test_pgd_accuracy_eps0.2": 0.0, "test_pgd_steps": 20,
                     "test_pgd_restarts": 1}
  # One step of 2.5 * 0.2, projected into the budget, is FGSM's step.
  config.eval.pgd_steps = 1
  assert robustness.attack_metrics(
      helpers.BumpClassifier(), split, config, 1, SEED,
      {"pgd": [0.2]}) == {"test_pgd_accuracy_eps0.2": 1.0, "test_pgd_steps": 1,
                          "test_pgd_restarts": 1}


def test_the_configured_restarts_find_what_pgd_from_x_cannot():
  # helpers.SaturatedClassifier: no cross-entropy gradient at x_0 = 0.7, so
  # PGD from x stays; random starts below about 0.59 walk across 0.5.
  config = _vib_config(pgd_epsilons=(0.25,), pgd_steps=20, pgd_restarts=30)
  config_checks.validate(config)
  split = data_lib.Split(np.array([[0.7, 0.3]], "float32"), np.array([1]))
  classifier = helpers.SaturatedClassifier()
  assert robustness.attack_metrics(classifier, split, config, 1, SEED) == {
      "test_pgd_accuracy_eps0.25": 0.0, "test_pgd_steps": 20,
      "test_pgd_restarts": 30}
  config.eval.pgd_restarts = 1
  assert robustness.attack_metrics(
      classifier, split, config, 1, SEED)["test_pgd_accuracy_eps0.25"] == 1.0


@pytest.mark.parametrize("restarts", [0, -1, 2.5, True, "3", None])
def test_bad_pgd_restarts_are_refused(restarts):
  fields = _vib_config(pgd_epsilons=(0.1,)).to_dict()
  fields["eval"]["pgd_restarts"] = restarts
  with pytest.raises(ValueError, match=r"^eval\.pgd_restarts must be an int"):
    config_checks.validate(ml_collections.ConfigDict(fields))


def test_pgd_accuracies_of_other_steps_count_as_missing():
  config = _vib_config(fgsm_epsilons=(0.1,), pgd_epsilons=(0.1, 0.2),
                       pgd_steps=20)
  done = {"test_fgsm_accuracy_eps0.1": 0.5, "test_pgd_accuracy_eps0.1": 0.4,
          "test_pgd_accuracy_eps0.3": 0.1, "test_pgd_steps": 20,
          "test_accuracy": 0.9}
  assert robustness.missing(done, config) == {"fgsm": [], "pgd": [0.2]}
  assert robustness.drop_stale(done, config) == done
  config.eval.pgd_steps = 40
  assert robustness.missing(done, config) == {"fgsm": [], "pgd": [0.1, 0.2]}
  assert robustness.drop_stale(done, config) == {
      "test_fgsm_accuracy_eps0.1": 0.5, "test_accuracy": 0.9}
  # Other starts are stale too; accuracies recorded before restarts existed
  # were taken from x alone.
  config.eval.pgd_steps = 20
  config.eval.pgd_restarts = 10
  assert robustness.missing(done, config) == {"fgsm": [], "pgd": [0.1, 0.2]}
  assert robustness.drop_stale(dict(done, test_pgd_restarts=1), config) == {
      "test_fgsm_accuracy_eps0.1": 0.5, "test_accuracy": 0.9}
  assert robustness.missing(dict(done, test_pgd_restarts=10), config) == {
      "fgsm": [], "pgd": [0.2]}
  config.eval.pgd_restarts = 1
  assert robustness.missing(done, config) == {"fgsm": [], "pgd": [0.2]}
  # Runs evaluated before PGD existed lack every budget.
  assert robustness.missing({"test_accuracy": 0.9}, config) == {
      "fgsm": [0.1], "pgd": [0.1, 0.2]}
