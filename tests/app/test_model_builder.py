"""The model builder (`vib_flows.app.model_builder`), the one reader of configs.

`model_builder` is the one place that reads a config to build a model and
passes its fields to the library, whose factories take plain arguments
(tests/test_networks.py, tests/test_optimizers.py). Model-level behaviour of
the built models is in tests/models/test_models.py.
"""


import pytest

from tests import helpers
from vib_flows import flows
from vib_flows import models
from vib_flows import networks
from vib_flows import synthetic_truth
from vib_flows.app import model_builder


def test_the_builder_lives_in_model_builder_only():
  for name in ("build_model", "flow_kwargs", "make_model"):
    with pytest.raises(AttributeError, match=f"no attribute '{name}'"):
      getattr(models, name)
  assert callable(model_builder.build_model)
  assert callable(model_builder.flow_kwargs)


def test_builder_reads_the_true_decoder_from_the_config():
  config = helpers.config("default")
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
  config = helpers.config("default")
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
  model = model_builder.build_model(config, helpers.data_info((4,), None))
  assert isinstance(model, models.VAE)
  assert model.encoder.hidden == (7,) and model.encoder.min_scale == 0.01
  assert model.generator.hidden == (5,)
  iaf_class = flows.registry.get_class("iaf")
  (iaf,) = [f for f in model.flow.flows if isinstance(f, iaf_class)]
  assert (iaf.hidden_units, iaf.forget_bias) == (6, 2.5)
  assert model.beta == 0.25 and model.seed == 11


def test_builder_passes_the_encoder_options():
  from vib_flows.app import model_builder  # pylint: disable=g-import-not-at-top
  config = helpers.config("test", **{"model.scale_shift": -5.0,
                                     "model.centered_inputs": True})
  model = model_builder.build_model(
      config, {"input_shape": (64,), "num_levels": 17, "num_classes": 10})
  assert model.encoder.scale_shift == -5.0 and model.encoder.centered_inputs
