"""Tests of vib_flows.networks: shapes, the scale floor, dtypes."""

import keras
import numpy as np
import tensorflow as tf

from vib_flows import networks


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
