"""The gated convolutional MNIST networks (vib_flows.gated_conv)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from vib_flows import gated_conv
from vib_flows import networks
from vib_flows.app import config_checks
from vib_flows.app import model_builder

# Output shape [H, W, C] of each gated layer: van den Berg et al. 2018's
# MNIST networks (models/VAE.py of their code).
ENCODER_SHAPES = [(28, 28, 32), (14, 14, 32), (14, 14, 64), (7, 7, 64),
                  (7, 7, 64), (1, 1, 256)]
DECODER_SHAPES = [(7, 7, 64), (7, 7, 64), (14, 14, 32), (14, 14, 32),
                  (28, 28, 32), (28, 28, 32)]


def _images(n, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.random((n, 28, 28, 1)) < 0.3).astype(np.float32)


def _gated_conv_config(kind="vae"):
  return helpers.config("default", **{
      "data.name": "binarized_mnist", "model.kind": kind,
      "model.network": "gated_conv", "model.likelihood": "bernoulli"})


def _randomize_biases(layer, seed):
  """Nonzero biases (they start at zero), so that a lost bias shows."""
  rng = np.random.default_rng(seed)
  for weight in layer.weights:
    if "bias" in weight.path:
      weight.assign(rng.normal(size=weight.shape).astype(np.float32))


@pytest.mark.parametrize("context_dim", [0, 256, 12])
def test_encoder_shapes(context_dim):
  encoder = gated_conv.GatedConvEncoder(5, context_dim=context_dim)
  x = tf.constant(_images(3))
  loc, scale, context = encoder(x)
  assert loc.shape == scale.shape == (3, 5)
  assert loc.dtype == scale.dtype == tf.float32
  assert np.all(scale.numpy() >= encoder.min_scale)
  if context_dim:
    assert context.shape == (3, context_dim)
  else:
    assert context is None
  h = x
  for layer, shape in zip(encoder.conv_layers, ENCODER_SHAPES, strict=True):
    h = layer(h)
    assert h.shape[1:] == shape


@pytest.mark.parametrize("centered", [False, True])
def test_heads_and_context_read_the_256_features(centered):
  encoder = gated_conv.GatedConvEncoder(
      5, min_scale=0.5, context_dim=256, scale_shift=-1.5,
      centered_inputs=centered)
  x = tf.constant(_images(2))
  h = 2.0 * x - 1.0 if centered else x
  for layer in encoder.conv_layers:
    h = layer(h)
  features = tf.reshape(h, [2, 256])
  loc, scale, context = encoder(x)
  assert encoder.context_head is None
  np.testing.assert_allclose(context, features, rtol=1e-6)
  np.testing.assert_allclose(loc, encoder.loc_head(features), rtol=1e-6)
  np.testing.assert_allclose(
      scale, tf.math.softplus(encoder.scale_head(features) - 1.5) + 0.5,
      rtol=1e-6)


def test_decoder_shapes():
  decoder = gated_conv.GatedConvDecoder(784)
  z = tf.random.normal([6, 4])
  logits = decoder(z)
  assert logits.shape == (6, 784)
  assert logits.dtype == tf.float32
  h = tf.reshape(z, [6, 1, 1, 4])
  for layer, shape in zip(decoder.conv_layers, DECODER_SHAPES, strict=True):
    h = layer(h)
    assert h.shape[1:] == shape
  # The flat logits are the [28, 28, 1] logits in row-major order.
  np.testing.assert_allclose(
      logits, tf.reshape(decoder.head(h), [6, 784]), rtol=1e-6)


def _gated_parameters(specs):
  """Weights of gated layers (in, out, kernel): two convolutions each."""
  return sum(2 * (k * k * c_in * c_out + c_out) for c_in, c_out, k in specs)


def test_parameter_counts_are_the_papers():
  d = 64
  encoder = gated_conv.GatedConvEncoder(d, context_dim=256)
  encoder.build((None, 28, 28, 1))
  convolutions = _gated_parameters([
      (1, 32, 5), (32, 32, 5), (32, 64, 5), (64, 64, 5), (64, 64, 5),
      (64, 256, 7)])
  assert encoder.count_params() == convolutions + 2 * (256 * d + d)
  decoder = gated_conv.GatedConvDecoder()
  decoder.build((None, d))
  convolutions = _gated_parameters([
      (d, 64, 7), (64, 64, 5), (64, 32, 5), (32, 32, 5), (32, 32, 5),
      (32, 32, 5)])
  assert decoder.count_params() == convolutions + 32 + 1


def test_gated_conv2d_is_the_gated_reference():
  layer = gated_conv.GatedConv2D(3, 5, strides=2, padding="same")
  x = tf.random.normal([2, 9, 9, 4])
  layer.build(x.shape)
  _randomize_biases(layer, 1)
  h, g = layer.h_conv, layer.g_conv
  assert h.kernel is not g.kernel

  def conv(c, padding):
    return tf.nn.conv2d(x, c.kernel, 2, padding) + c.bias

  expected = conv(h, "SAME") * tf.sigmoid(conv(g, "SAME"))
  np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-5)

  valid = gated_conv.GatedConv2D(3, 5, 2, "valid", activation="tanh")
  valid.build(x.shape)
  _randomize_biases(valid, 2)
  h, g = valid.h_conv, valid.g_conv
  expected = tf.tanh(conv(h, "VALID")) * tf.sigmoid(conv(g, "VALID"))
  np.testing.assert_allclose(valid(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("padding,size", [("same", 14), ("valid", 17)])
def test_gated_conv2d_transpose_is_the_gated_reference(padding, size):
  layer = gated_conv.GatedConv2DTranspose(3, 5, 2, padding)
  x = tf.random.normal([2, 7, 7, 4])
  layer.build(x.shape)
  _randomize_biases(layer, 3)

  def conv_t(c):
    return tf.nn.conv2d_transpose(
        x, c.kernel, [2, size, size, 3], 2, padding.upper()) + c.bias

  expected = conv_t(layer.h_conv) * tf.sigmoid(conv_t(layer.g_conv))
  np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-5)


def _round_trip(layer, inputs):
  """A layer rebuilt from `layer`'s serialized config, with its weights."""
  layer(inputs)
  clone = keras.saving.deserialize_keras_object(
      keras.saving.serialize_keras_object(layer))
  clone(inputs)
  clone.set_weights(layer.get_weights())
  return clone


def test_get_config_round_trips():
  x = tf.constant(_images(2))
  encoder = gated_conv.GatedConvEncoder(
      3, min_scale=0.01, context_dim=7, scale_shift=-1.5,
      centered_inputs=True, name="enc")
  clone = _round_trip(encoder, x)
  assert type(clone) is gated_conv.GatedConvEncoder
  assert clone.get_config() == encoder.get_config()
  for a, b in zip(encoder(x), clone(x), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6)

  z = tf.random.normal([3, 3])
  decoder = gated_conv.GatedConvDecoder(784, (28, 28, 1), name="dec")
  clone = _round_trip(decoder, z)
  assert clone.get_config() == decoder.get_config()
  np.testing.assert_allclose(decoder(z), clone(z), rtol=1e-6)

  layer = gated_conv.GatedConv2DTranspose(4, (3, 5), (2, 1), "valid", "relu")
  y = tf.random.normal([2, 5, 5, 2])
  clone = _round_trip(layer, y)
  assert clone.get_config() == layer.get_config()
  assert (clone.kernel_size, clone.strides) == ((3, 5), (2, 1))
  np.testing.assert_allclose(layer(y), clone(y), rtol=1e-6)


def test_other_shapes_are_refused():
  with pytest.raises(ValueError, match="reads 28x28x1 images.*8, 8, 1"):
    gated_conv.GatedConvDecoder(64, (8, 8, 1))
  with pytest.raises(ValueError, match="the likelihood needs 200704"):
    gated_conv.GatedConvDecoder(784 * 256)
  with pytest.raises(ValueError, match="reads 28x28x1 images.*28, 28"):
    gated_conv.GatedConvEncoder(4).build((None, 28, 28))
  with pytest.raises(ValueError, match="Unknown padding 'full'"):
    gated_conv.GatedConv2D(3, 5, padding="full")


def test_heads_are_float32_under_mixed_precision():
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    encoder = gated_conv.GatedConvEncoder(4, context_dim=256)
    decoder = gated_conv.GatedConvDecoder()
    loc, scale, context = encoder(tf.constant(_images(2)))
    logits = decoder(tf.random.normal([2, 4]))
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert encoder.conv_layers[0].h_conv.compute_dtype == "float16"
  assert context.dtype == tf.float16
  assert loc.dtype == scale.dtype == logits.dtype == tf.float32


def test_builder_picks_the_network_and_the_vae_trains():
  config = _gated_conv_config()
  config.model.latent_dim = 4
  config.model.context_dim = 256
  config.flow.name = "sylvester_orthogonal"
  config.flow.num_flows = 2
  config.flow.num_ortho_vectors = 2
  config.flow.amortized = True
  config_checks.validate(config)
  model = model_builder.build_model(config, {"input_shape": (28, 28, 1)})
  assert isinstance(model.encoder, gated_conv.GatedConvEncoder)
  assert isinstance(model.decoder, gated_conv.GatedConvDecoder)
  assert model.encoder.context_dim == 256
  model.compile(optimizer=keras.optimizers.Adam(1e-3))
  before = [w.numpy() for w in model.decoder.weights]
  x = tf.constant(_images(8))
  for _ in range(3):
    metrics = model.train_step({"x": x})
    assert np.isfinite(float(metrics["loss"]))
  assert not np.allclose(before[0], model.decoder.weights[0].numpy())
  with pytest.raises(ValueError, match="reads 28x28x1 images"):
    model_builder.build_model(config, {"input_shape": (8, 8, 1)})


def test_mlp_is_the_default_network():
  config = helpers.config("default")
  assert config.model.network == "mlp"
  config.model.latent_dim = 2
  config.model.encoder_hidden = config.model.decoder_hidden = (3,)
  model = model_builder.build_model(config, {"input_shape": (4,),
                                             "num_levels": 17})
  assert type(model.encoder) is networks.Encoder
  assert type(model.decoder) is networks.MLP
  del config.model.network  # An old config.json without the field.
  assert model_builder.check_network(config) == "mlp"


@pytest.mark.parametrize("field,value,message", [
    ("model.network", "conv", "Unknown model.network 'conv'; valid: mlp, "
     "gated_conv."),
    ("model.kind", "vib", "'gated_conv' supports the VAE"),
    ("model.likelihood", "categorical", "needs model.likelihood='bernoulli'"),
    ("model.decoder", "true", "needs model.decoder='learned'"),
])
def test_config_checks_refuse(field, value, message):
  config = _gated_conv_config()
  if field == "model.decoder":  # What the true decoder needs, but this.
    config.data.name = "synthetic:banana"
    config.model.latent_dim = 2
  section, name = field.split(".")
  config[section][name] = value
  with pytest.raises(ValueError, match=message):
    config_checks.validate(config)


def test_the_sylvester_mnist_config_uses_the_gated_network():
  config = helpers.config("sylvester_mnist")
  config_checks.validate(config)
  assert config.model.network == "gated_conv"
  assert (config.model.latent_dim, config.model.context_dim) == (64, 256)
  assert (config.flow.name, config.flow.num_flows,
          config.flow.num_ortho_vectors, config.flow.amortized) == (
              "sylvester_orthogonal", 16, 32, True)
  model = model_builder.build_model(config, {"input_shape": (28, 28, 1)})
  assert isinstance(model.encoder, gated_conv.GatedConvEncoder)
  assert isinstance(model.decoder, gated_conv.GatedConvDecoder)
  assert model.amortized and model.encoder.context_head is None
