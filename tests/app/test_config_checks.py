"""Impossible configs are refused before any work, naming the problem."""


import pytest

from tests import helpers
from vib_flows import distributions
from vib_flows import flows
from vib_flows import models
from vib_flows.app import config_checks
from vib_flows.app import model_builder


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
    ("eval.num_importance_samples", 0,
     "eval.num_importance_samples must be >= 1"),
    ("flow.num_flows", -1, "flow.num_flows must be >= 0"),
    ("model.num_levels", 1, "model.num_levels must be >= 2"),
    ("flow.num_ortho_vectors", 99,
     "num_ortho_vectors=99 exceeds model.latent_dim"),
    ("optimizer.learning_rate", 0.0, "optimizer.learning_rate must be > 0"),
    ("flow.forget_bias", float("nan"), "flow.forget_bias must be finite"),
    ("optimizer.learning_rate", float("nan"),
     r"optimizer.learning_rate must be a finite number > 0, got nan"),
    ("loss.beta", float("inf"), r"loss.beta must be a finite number >= 0"),
    ("optimizer.clipnorm", float("nan"), "optimizer.clipnorm must be a finite"),
    ("model.min_scale", float("nan"), r"model.min_scale must be a finite"),
    ("train.num_epochs", 0, r"train.num_epochs must be >= 1, got 0"),
    ("data.num_classes", -1, r"data.num_classes must be >= 0, got -1"),
    ("runtime.intra_op_threads", -1, "runtime.intra_op_threads must be >= 0"),
    ("runtime.inter_op_threads", -2, "runtime.inter_op_threads must be >= 0"),
    ("export.max_log_likelihood_rows", 0,
     "export.max_log_likelihood_rows must be > 0, got 0"),
])
def test_impossible_config_is_refused(field, value, message):
  config = helpers.config("default")
  section, name = field.split(".")
  config[section][name] = value
  with pytest.raises(ValueError, match=message):
    config_checks.validate(config)


# What each shipped config's docstring promises: model kind, data set and
# likelihood, latent size, flow (name, layers, amortized), prior.
SHIPPED = {
    "default": ("vae", "digits", "categorical", 16, "planar", 0, False),
    "vae_digits": ("vae", "digits", "categorical", 16,
                   "sylvester_householder", 4, True),
    "vib_digits": ("vib", "digits", "categorical", 16, "iaf", 2, True),
    "vae_mnist": ("vae", "mnist", "bernoulli", 40, "planar", 80, True),
    "sylvester_mnist": ("vae", "binarized_mnist", "bernoulli", 64,
                        "sylvester_orthogonal", 16, True),
    "vib_mnist": ("vib", "mnist", "categorical", 256, "planar", 0, False),
    "test": ("vae", "digits", "categorical", 4, "planar", 2, False),
}
INPUT_SHAPES = {"digits": (64,), "mnist": (28, 28, 1),
                "binarized_mnist": (28, 28, 1)}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_configs_are_valid_and_build_what_they_document(name):
  kind, data_name, likelihood, latent_dim, flow_name, num_flows, amortized = (
      SHIPPED[name])
  config = helpers.config(name)
  config_checks.validate(config)
  assert (config.data.name, config.model.likelihood) == (data_name, likelihood)
  info = helpers.data_info(INPUT_SHAPES[data_name], num_levels=None)
  model = model_builder.build_model(config, info)
  assert isinstance(model, models.VAE if kind == "vae" else models.VIB)
  assert model.latent_dim == latent_dim
  # The stack may interleave Reverse permutations between the flows; a
  # planar stack is one layer of num_flows maps.
  layers = [layer for layer in model.flow.flows
            if not isinstance(layer, flows.Reverse)]
  assert sum(getattr(layer, "num_maps", 1) for layer in layers) == num_flows
  assert {layer.flow_name for layer in layers} <= {flow_name}
  assert model.amortized == amortized
  # A broken copy of the same config is refused, naming the field.
  config.model.latent_dim = 0
  with pytest.raises(ValueError, match="model.latent_dim must be > 0, got 0"):
    config_checks.validate(config)


@pytest.mark.parametrize("field, value, words", [
    ("optimizer.beta_1", 1.0, "optimizer.beta_1 must be in [0.0, 1.0)"),
    ("optimizer.decay_rate", 0.0, "optimizer.decay_rate must be in (0, 1]"),
    ("optimizer.decay_rate", float("nan"), "optimizer.decay_rate"),
    ("optimizer.decay_every_epochs", -1, "optimizer.decay_every_epochs"),
    ("train.ema_decay", 1.0, "train.ema_decay must be in [0.0, 1.0)"),
    ("train.ema_decay", float("nan"), "train.ema_decay"),
    ("data.binarization_seed", -3, "data.binarization_seed"),
    ("model.scale_shift", float("inf"), "model.scale_shift must be finite"),
])
def test_bad_recipe_fields_are_refused(field, value, words):
  config = helpers.config("test", **{field: value})
  with pytest.raises(ValueError) as error:
    config_checks.validate(config)
  assert words in str(error.value)


def test_beta_1_only_for_adam_and_adamax():
  config = helpers.config("test", **{"optimizer.name": "sgd",
                                     "optimizer.beta_1": 0.5})
  with pytest.raises(ValueError, match="applies to adam and adamax only"):
    config_checks.validate(config)
  config_checks.validate(helpers.config("test", **{"optimizer.beta_1": 0.5}))


def test_config_checks_ask_the_registries():
  config = helpers.config("test")
  config.model.prior = "laplace"
  with pytest.raises(ValueError, match="valid: " + ", ".join(
      distributions.prior_names())):
    config_checks.validate(config)
  config = helpers.config("test")
  config.model.likelihood = "poisson"
  with pytest.raises(ValueError, match="valid: " + ", ".join(
      distributions.likelihood_names())):
    config_checks.validate(config)
