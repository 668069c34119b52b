"""Impossible configs are refused before any work, naming the problem."""

import pytest

from tests import helpers
from vib_flows import config_checks
from vib_flows import distribute


@pytest.mark.parametrize("field,value,message", [
    ("flow.name", "plnar", "Unknown flow.name 'plnar'.*planar.*radial"),
    ("model.likelihood", "poisson", "Unknown model.likelihood.*bernoulli"),
    ("runtime.strategy", "horovod", "Unknown runtime.strategy.*mirrored"),
    ("loss.estimator", "vimco", "Unknown loss.estimator.*score_function"),
    ("model.kind", "gan", "Unknown model.kind.*vib"),
    ("model.prior", "vamp", "Unknown model.prior.*mixture"),
    ("optimizer.name", "lion", "Unknown optimizer.name.*adam"),
    ("model.latent_dim", 0, "model.latent_dim must be > 0, got 0"),
    ("train.batch_size", -5, "train.batch_size must be > 0"),
    ("loss.beta", -0.1, "loss.beta must be >= 0, got -0.1"),
    ("eval.num_importance_samples", 0, "eval.num_importance_samples must be >= 1"),
    ("flow.num_flows", -1, "flow.num_flows must be >= 0"),
    ("model.num_levels", 1, "model.num_levels must be >= 2"),
    ("flow.num_ortho_vectors", 99, "num_ortho_vectors=99 exceeds model.latent_dim"),
    ("optimizer.learning_rate", 0.0, "optimizer.learning_rate must be > 0"),
    ("flow.forget_bias", float("nan"), "flow.forget_bias must be finite"),
])
def test_impossible_config_is_refused(field, value, message):
  config = helpers.config("default")
  section, name = field.split(".")
  config[section][name] = value
  with pytest.raises(ValueError, match=message):
    config_checks.validate(config)


@pytest.mark.parametrize("name", [
    "default", "vae_digits", "vib_digits", "vae_mnist", "sylvester_mnist",
    "vib_mnist", "test",
])
def test_shipped_configs_are_valid(name):
  config_checks.validate(helpers.config(name))


def test_batch_not_divisible_by_replicas_is_refused():
  class TwoReplicas:
    num_replicas_in_sync = 2

  with pytest.raises(ValueError, match="101 is not divisible by the 2 replicas"):
    distribute.check_batch_size(101, TwoReplicas())
  distribute.check_batch_size(100, TwoReplicas())


def test_multi_worker_without_tf_config_is_refused(monkeypatch):
  monkeypatch.delenv("TF_CONFIG", raising=False)
  config = helpers.config("default")
  config.runtime.strategy = "multi_worker_mirrored"
  with pytest.raises(ValueError, match="TF_CONFIG"):
    distribute.make_strategy(config.runtime)
