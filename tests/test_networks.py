"""Tests of vib_flows.networks: shapes, the scale floor, dtypes, options.

The encoder's input centring and scale shift against the encoder computed
from its own kernels, and the decoder factory's plain arguments.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from vib_flows import networks
from vib_flows import synthetic_truth


def test_encoder_shapes_floor_and_context():
  enc = networks.Encoder(4, hidden=(8,), min_scale=1e-3, context_dim=5)
  x = np.random.default_rng(0).uniform(size=(6, 7, 7, 1)).astype("float32")
  loc, scale, context = enc(x)
  assert loc.shape == (6, 4) and scale.shape == (6, 4)
  assert context.shape == (6, 5)
  assert loc.dtype == tf.float32 and scale.dtype == tf.float32
  # Push the pre-activation of the scale to -inf: the floor holds.
  enc.scale_head.bias.assign(np.full(4, -1e4, "float32"))
  _, scale, _ = enc(x)
  np.testing.assert_allclose(scale.numpy(), 1e-3, rtol=1e-6)
  assert np.all(scale.numpy() >= 1e-3)
  assert networks.Encoder(4, hidden=(8,))(x)[2] is None


def test_mlp_output_and_config_round_trip():
  mlp = networks.MLP(10, hidden=(8, 8))
  out = mlp(tf.zeros([3, 2]))
  assert out.shape == (3, 10) and out.dtype == tf.float32
  clone = networks.MLP.from_config(mlp.get_config())
  assert clone.output_units == 10 and clone.hidden == (8, 8)


def test_mixed_precision_heads_stay_float32():
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    enc = networks.Encoder(3, hidden=(8,), context_dim=4)
    loc, scale, context = enc(tf.ones([2, 5]))
    assert enc.hidden_layers[0].compute_dtype == "float16"
    assert loc.dtype == tf.float32 and scale.dtype == tf.float32
    assert context.dtype == tf.float16
    assert networks.MLP(6, hidden=(8,))(tf.ones([2, 3])).dtype == tf.float32
  finally:
    keras.mixed_precision.set_global_policy("float32")


def _mlp_reference(encoder, x, scale_shift, centered):
  """The encoder's loc and scale from its own kernels, in float64."""
  h = x.reshape(len(x), -1).astype(np.float64)
  if centered:
    h = 2.0 * h - 1.0
  for layer in encoder.hidden_layers:
    kernel, bias = (v.numpy().astype(np.float64) for v in layer.weights)
    h = np.maximum(h @ kernel + bias, 0.0)
  loc_k, loc_b = (v.numpy().astype(np.float64)
                  for v in encoder.loc_head.weights)
  scale_k, scale_b = (v.numpy().astype(np.float64)
                      for v in encoder.scale_head.weights)
  pre = h @ scale_k + scale_b + scale_shift
  return h @ loc_k + loc_b, np.log1p(np.exp(pre)) + encoder.min_scale


@pytest.mark.parametrize("scale_shift, centered", [(0.0, False), (-5.0, True),
                                                   (-5.0, False)])
def test_encoder_centring_and_scale_shift(scale_shift, centered):
  encoder = networks.Encoder(3, (8,), scale_shift=scale_shift,
                             centered_inputs=centered)
  x = np.random.default_rng(1).uniform(size=(4, 2, 3)).astype(np.float32)
  loc, scale, _ = encoder(x)
  want_loc, want_scale = _mlp_reference(encoder, x, scale_shift, centered)
  np.testing.assert_allclose(loc.numpy(), want_loc, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(scale.numpy(), want_scale, rtol=1e-5, atol=1e-7)
  copy = networks.Encoder.from_config(encoder.get_config())
  assert (copy.scale_shift, copy.centered_inputs) == (scale_shift, centered)


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
