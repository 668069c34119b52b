"""The seams of the config-free library.

`model_builder` is the one place that reads a config to build a model; the
library's factories take plain arguments (`networks.make_decoder`,
`optimizers.get`); `distributions` is a package whose names and Keras
registrations are those of the former module. Model-level behaviour of the
built models is in tests/test_models.py.
"""

import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from configs import default
from vib_flows import distributions
from vib_flows import flows
from vib_flows import models
from vib_flows import networks
from vib_flows import optimizers
from vib_flows import synthetic_truth
from vib_flows.app import model_builder
from vib_flows.distributions import likelihoods
from vib_flows.distributions import posterior
from vib_flows.distributions import priors
from vib_flows.distributions import support


def test_the_builder_lives_in_model_builder_only():
  for name in ("build_model", "flow_kwargs", "make_model"):
    with pytest.raises(AttributeError, match=f"no attribute '{name}'"):
      getattr(models, name)
  assert callable(model_builder.build_model)
  assert callable(model_builder.flow_kwargs)


def test_make_decoder_takes_plain_arguments():
  learned = networks.make_decoder("learned", 12, hidden=(8, 4),
                                  activation="tanh")
  assert isinstance(learned, networks.MLP)
  assert (learned.output_units, learned.hidden, learned.activation) == (
      12, (8, 4), "tanh")
  true = networks.make_decoder("true", synthetic_truth.NUM_PIXELS,
                               variant="ring")
  z = tf.constant([[0.3, -1.2], [2.0, 0.5]])
  np.testing.assert_allclose(true(z), synthetic_truth.true_logits(z, "ring"))
  with pytest.raises(ValueError, match="valid: learned, true"):
    networks.make_decoder("fixed", 12)
  with pytest.raises(ValueError, match="needs the synthetic data's variant"):
    networks.make_decoder("true", synthetic_truth.NUM_PIXELS)
  with pytest.raises(ValueError, match="the likelihood needs 12 parameters"):
    networks.make_decoder("true", 12, variant="ring")


def test_builder_reads_the_true_decoder_from_the_config():
  config = default.get_config()
  config.data.name = "synthetic:banana"
  config.model.latent_dim = 2
  config.model.likelihood = "bernoulli"
  config.model.decoder = "true"
  decoder = model_builder.make_decoder(config, synthetic_truth.NUM_PIXELS)
  assert isinstance(decoder, networks.TrueDecoder)
  assert decoder.variant == "banana"
  config.model.latent_dim = 3
  with pytest.raises(ValueError, match="model.latent_dim = 2"):
    model_builder.make_decoder(config, synthetic_truth.NUM_PIXELS)


def test_builder_passes_the_config_fields_to_the_library():
  config = default.get_config()
  config.model.latent_dim = 3
  config.model.encoder_hidden = (7,)
  config.model.decoder_hidden = (5,)
  config.model.min_scale = 0.01
  config.flow.name = "iaf"
  config.flow.num_flows = 1
  config.flow.hidden_units = 6
  config.flow.forget_bias = 2.5
  config.loss.beta = 0.25
  config.seed = 11
  model = model_builder.build_model(config, types.SimpleNamespace(
      input_shape=(4,), num_classes=None, num_levels=17))
  assert isinstance(model, models.VAE)
  assert model.encoder.hidden == (7,) and model.encoder.min_scale == 0.01
  assert model.generator.hidden == (5,)
  iaf_class = flows.registry.get_class("iaf")
  (iaf,) = [f for f in model.flow.flows if isinstance(f, iaf_class)]
  assert (iaf.hidden_units, iaf.forget_bias) == (6, 2.5)
  assert model.beta == 0.25 and model.seed == 11


def test_optimizer_names_live_in_one_list():
  assert optimizers.names() == ("adam", "adamax", "sgd", "rmsprop")
  assert type(optimizers.get("adam", learning_rate=0.1)) is (
      optimizers.FusedAdam)
  assert type(optimizers.get("adamax")) is optimizers.FusedAdamax
  assert type(optimizers.get("sgd")) is keras.optimizers.SGD
  with pytest.raises(ValueError, match="valid: adam, adamax, sgd, rmsprop"):
    optimizers.get("lion")


def test_distributions_package_keeps_the_module_names():
  assert distributions.Prior is priors.Prior
  assert distributions.make_likelihood is likelihoods.make_likelihood
  assert distributions.sample_diagonal_gaussian is (
      posterior.sample_diagonal_gaussian)
  assert distributions.validate_labels is support.validate_labels
  assert distributions.prior_names() == ("flow", "mixture", "standard_normal")
  assert distributions.likelihood_names() == (
      "bernoulli", "categorical", "gaussian")
  # .keras files name classes by their registered names: unchanged.
  for cls in (distributions.StandardNormalPrior, distributions.MixturePrior,
              distributions.FlowPrior, distributions.BernoulliLikelihood,
              distributions.CategoricalLikelihood,
              distributions.GaussianLikelihood,
              distributions.CategoricalLabels):
    assert keras.saving.get_registered_name(cls) == f"vib_flows>{cls.__name__}"
    assert keras.saving.get_registered_object(
        f"vib_flows>{cls.__name__}") is cls


def test_likelihood_validate_delegates_to_the_support_checks():
  bernoulli = distributions.make_likelihood("bernoulli", (3,))
  with pytest.raises(ValueError, match=r"needs data in \[0, 1\]"):
    bernoulli.validate(np.array([[0.0, 1.5, 0.0]]))
  with pytest.raises(ValueError, match="bernoulli likelihood data: 1 values"):
    bernoulli.validate(np.array([[0.0, np.inf, 0.0]]))
  categorical = distributions.make_likelihood("categorical", (3,), 4)
  categorical.validate(np.array([[0.0, 3.0, 1.0]]))
  with pytest.raises(ValueError, match=r"levels in 0..3 \(model.num_levels"):
    categorical.validate(np.array([[0.0, 4.0, 1.0]]))
