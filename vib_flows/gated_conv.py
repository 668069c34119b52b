"""Gated convolutional encoder and decoder for 28x28x1 images (MNIST).

The networks of van den Berg et al. 2018, "Sylvester Normalizing Flows for
Variational Inference" (UAI), for binarized MNIST, whose convolutions are
gated (Dauphin et al. 2017's gated linear units):

    h = conv_h(x) * sigmoid(conv_g(x))

with conv_h and conv_g two convolutions of the same shape, each with its own
kernel and bias.

`GatedConv2D`, `GatedConv2DTranspose`: the gated (transposed) convolution
    layers, [B, H, W, C] -> [B, H', W', filters].
`GatedConvEncoder`: x [B, 28, 28, 1] -> loc [B, d], scale [B, d] of
    q0(z0|x) = N(loc, diag scale^2), scale = softplus(a + scale_shift) +
    min_scale, and the flows' context [B, C] (or None): the call contract of
    `networks.Encoder`.
`GatedConvDecoder`: z [N, d] -> [N, 784] float32 Bernoulli logits of the 28x28x1
    image, flattened row-major as the likelihoods read them.

Layers (filters, kernel, stride; PyTorch's padding p of the paper's code as
Keras padding: p = (k - 1) / 2 is "same", p = 0 is "valid"):

    encoder  28x28x1 -> 32 k5 s1 -> 32 k5 s2 (14x14) -> 64 k5 s1 -> 64 k5 s2
             (7x7) -> 64 k5 s1 -> 256 k7 s1 "valid" (1x1): 256 features;
             loc = Dense(d), scale = softplus(Dense(d)) + min_scale.
    decoder  z as [1, 1, d] -> 64 k7 s1 "valid" (7x7) -> 64 k5 s1 -> 32 k5 s2
             (14x14) -> 32 k5 s1 -> 32 k5 s2 (28x28) -> 32 k5 s1 -> a 1x1
             convolution to one logit per pixel (linear, float32).

Differences from the paper's code, none of which changes a shape or a
parameter count: (1) for the stride-2 layers TensorFlow's "same" pads one
row and column less before the image than after it, where PyTorch pads 2 on
both sides (and the transposed layers' output_padding = 1 adds the extra row
after), so the sampling grid of those layers is shifted by one pixel;
(2) Keras' initializers (Glorot-uniform kernels, zero biases) instead of
PyTorch's; (3) the decoder returns logits (the package's likelihoods take
parameters) where theirs applies a sigmoid; (4) the encoder's scale is a
standard deviation softplus(a) + min_scale, where their softplus is a
variance.

Under a mixed-precision policy the convolutions compute in the compute dtype
(float16) and the output heads (loc, scale, the decoder's logits) in float32.
"""

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

IMAGE_SHAPE = (28, 28, 1)
NUM_PIXELS = 28 * 28
FEATURES = 256  # Width of the encoder's last gated convolution (1x1).
PADDINGS = ("same", "valid")
# (filters, kernel size, stride, padding) of each gated layer.
ENCODER_LAYERS = (
    (32, 5, 1, "same"), (32, 5, 2, "same"), (64, 5, 1, "same"),
    (64, 5, 2, "same"), (64, 5, 1, "same"), (FEATURES, 7, 1, "valid"))
DECODER_LAYERS = (
    (64, 7, 1, "valid"), (64, 5, 1, "same"), (32, 5, 2, "same"),
    (32, 5, 1, "same"), (32, 5, 2, "same"), (32, 5, 1, "same"))


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
  """An int or a pair of ints as a pair (height, width) of positive ints."""
  pair = (value, value) if isinstance(value, int) else tuple(value)
  if len(pair) != 2 or any(int(v) < 1 for v in pair):
    raise ValueError(f"{name} must be a positive int or a pair of them, got "
                     f"{value!r}.")
  return int(pair[0]), int(pair[1])


def _check_image_shape(shape: Sequence[int | None], what: str) -> None:
  if tuple(shape) != IMAGE_SHAPE:
    raise ValueError(
        f"{what} reads 28x28x1 images (van den Berg et al.'s MNIST network, "
        f"shape {IMAGE_SHAPE}), got image shape {tuple(shape)}; use "
        "model.network='mlp' for other data.")


class _GatedConvolution(keras.layers.Layer):
  """conv_h(x) * sigmoid(conv_g(x)) of two convolutions of `conv_class`."""

  conv_class: Any = None

  def __init__(self, filters: int, kernel_size: int | Sequence[int],
               strides: int | Sequence[int] = 1, padding: str = "same",
               activation: str | None = None, **kwargs: Any):
    super().__init__(**kwargs)
    self.filters = int(filters)
    self.kernel_size = _pair(kernel_size, "kernel_size")
    self.strides = _pair(strides, "strides")
    if padding not in PADDINGS:
      raise ValueError(
          f"Unknown padding {padding!r}; valid: {', '.join(PADDINGS)}.")
    self.padding = padding
    self.activation = activation
    self.activation_fn = keras.activations.get(activation)
    conv = dict(filters=self.filters, kernel_size=self.kernel_size,
                strides=self.strides, padding=padding)
    self.h_conv = self.conv_class(name="h", **conv)
    self.g_conv = self.conv_class(name="gate", **conv)

  def build(self, input_shape: Sequence[int | None]) -> None:
    for conv in (self.h_conv, self.g_conv):
      if not conv.built:
        conv.build(input_shape)
    self.built = True

  def compute_output_shape(self, input_shape: Sequence[int | None]
                           ) -> tuple[int | None, ...]:
    return tuple(self.h_conv.compute_output_shape(input_shape))

  def call(self, x: tf.Tensor) -> tf.Tensor:
    h = self.h_conv(x)
    if self.activation is not None:
      h = self.activation_fn(h)
    return h * tf.sigmoid(self.g_conv(x))

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(filters=self.filters, kernel_size=list(self.kernel_size),
                  strides=list(self.strides), padding=self.padding,
                  activation=self.activation)
    return config


@keras.saving.register_keras_serializable(package="vib_flows")
class GatedConv2D(_GatedConvolution):
  """Gated 2-D convolution: h = act(conv_h(x)) * sigmoid(conv_g(x)).

  van den Berg et al. 2018's GatedConv2d. x [B, H, W, C] ->
  [B, H', W', filters], H' = ceil(H / stride) ("same") or
  ceil((H - kernel + 1) / stride) ("valid"). The two convolutions `h_conv`
  and `g_conv` (`keras.layers.Conv2D`) have their own kernels and biases.

  Args:
    filters: output channels.
    kernel_size: an int or (height, width).
    strides: an int or (height, width).
    padding: "same" or "valid".
    activation: None (the paper's binary-data networks: h is linear) or a
      Keras activation name applied to conv_h(x).
  """

  conv_class = keras.layers.Conv2D


@keras.saving.register_keras_serializable(package="vib_flows")
class GatedConv2DTranspose(_GatedConvolution):
  """Gated transposed convolution: act(convT_h(x)) * sigmoid(convT_g(x)).

  van den Berg et al. 2018's GatedConvTranspose2d. x [B, H, W, C] ->
  [B, H', W', filters], H' = H * stride ("same") or
  (H - 1) * stride + kernel ("valid"). The two convolutions `h_conv` and
  `g_conv` (`keras.layers.Conv2DTranspose`) have their own kernels and biases.

  Args: as `GatedConv2D`.
  """

  conv_class = keras.layers.Conv2DTranspose


def _gated_stack(layer_class: Any, specs: Sequence[tuple[int, int, int, str]],
                 prefix: str) -> list[Any]:
  return [layer_class(filters, kernel, stride, padding, name=f"{prefix}_{i}")
          for i, (filters, kernel, stride, padding) in enumerate(specs)]


def _build_stack(layers: Sequence[Any], shape: tuple[int | None, ...]
                 ) -> tuple[int | None, ...]:
  for layer in layers:
    if not layer.built:
      layer.build(shape)
    shape = layer.compute_output_shape(shape)
  return shape


@keras.saving.register_keras_serializable(package="vib_flows")
class GatedConvEncoder(keras.layers.Layer):
  """van den Berg et al. 2018's gated convolutional MNIST encoder.

  `loc, scale, context = encoder(x)`, as `networks.Encoder`: six
  `GatedConv2D` layers (see the module docstring) turn x [B, 28, 28, 1] into
  256 features f [B, 256]; loc = Dense(d)(f), scale = softplus(Dense(d)(f) +
  scale_shift) + min_scale.

  The context of amortized flows: with context_dim = 256 the features f
  themselves, as in the paper (whose flow parameters are linear maps of f);
  with another context_dim > 0 a linear projection Dense(context_dim)(f);
  with 0 none.

  Args:
    latent_dim: d.
    min_scale: floor added to the softplus scale.
    context_dim: C, width of the context (0: none; 256: the features).
    scale_shift: s in scale = softplus(a + s) + min_scale.
    centered_inputs: feed the network 2x - 1 instead of x in [0, 1].
  """

  def __init__(self, latent_dim: int, min_scale: float = 1e-4,
               context_dim: int = 0, scale_shift: float = 0.0,
               centered_inputs: bool = False, **kwargs: Any):
    super().__init__(**kwargs)
    self.latent_dim = int(latent_dim)
    self.min_scale = float(min_scale)
    self.context_dim = int(context_dim or 0)
    if self.context_dim < 0:
      raise ValueError(f"context_dim must be >= 0, got {context_dim}.")
    self.scale_shift = float(scale_shift)
    self.centered_inputs = bool(centered_inputs)
    self.conv_layers = _gated_stack(GatedConv2D, ENCODER_LAYERS, "gated")
    self.loc_head = keras.layers.Dense(self.latent_dim, name="loc",
                                       dtype="float32")
    self.scale_head = keras.layers.Dense(self.latent_dim, name="scale",
                                         dtype="float32")
    self.context_head = None
    if self.context_dim and self.context_dim != FEATURES:
      self.context_head = keras.layers.Dense(self.context_dim, name="context")

  def build(self, input_shape: Sequence[int | None]) -> None:
    _check_image_shape(input_shape[1:], "GatedConvEncoder")
    shape = _build_stack(self.conv_layers, (None,) + IMAGE_SHAPE)
    if tuple(shape[1:]) != (1, 1, FEATURES):  # The layer table's invariant.
      raise AssertionError(f"Encoder features of shape {shape}.")
    for head in (self.loc_head, self.scale_head, self.context_head):
      if head is not None and not head.built:
        head.build((None, FEATURES))
    self.built = True

  def call(self, x: tf.Tensor, training: bool = False
           ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | None]:
    """x: [B, 28, 28, 1] in [0, 1] -> (loc [B, d], scale [B, d], context).

    context: [B, C] or None. loc and scale are float32; context is in the
    compute dtype.
    """
    h = x
    if self.centered_inputs:
      h = 2.0 * h - 1.0
    for layer in self.conv_layers:
      h = layer(h, training=training)
    features = tf.reshape(h, [tf.shape(h)[0], FEATURES])
    loc = self.loc_head(features)
    pre_scale = self.scale_head(features)
    if self.scale_shift:
      pre_scale = pre_scale + self.scale_shift
    scale = tf.math.softplus(pre_scale) + self.min_scale
    context = None
    if self.context_head is not None:
      context = self.context_head(features)
    elif self.context_dim:
      context = features
    return loc, scale, context

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(latent_dim=self.latent_dim, min_scale=self.min_scale,
                  context_dim=self.context_dim, scale_shift=self.scale_shift,
                  centered_inputs=self.centered_inputs)
    return config


@keras.saving.register_keras_serializable(package="vib_flows")
class GatedConvDecoder(keras.layers.Layer):
  """van den Berg et al. 2018's gated convolutional MNIST decoder.

  z [N, d] -> [N, 784] float32 logits: z as a 1x1 image of d channels, six
  `GatedConv2DTranspose` layers (see the module docstring) to [N, 28, 28,
  32], a 1x1 convolution to [N, 28, 28, 1] logits, flattened row-major (the
  order in which the likelihoods read the parameters of a [28, 28, 1] image).

  Args:
    output_units: the likelihood's number of parameters per example; must be
      784 (one Bernoulli logit per pixel).
    image_shape: the data's image shape; must be (28, 28, 1).

  Raises:
    ValueError: another image shape or number of outputs.
  """

  def __init__(self, output_units: int = NUM_PIXELS,
               image_shape: Sequence[int] = IMAGE_SHAPE, **kwargs: Any):
    super().__init__(**kwargs)
    self.image_shape = tuple(int(s) for s in image_shape)
    _check_image_shape(self.image_shape, "GatedConvDecoder")
    self.output_units = int(output_units)
    if self.output_units != NUM_PIXELS:
      raise ValueError(
          f"GatedConvDecoder gives {NUM_PIXELS} logits, one per pixel of a "
          f"28x28x1 image (a Bernoulli likelihood); the likelihood needs "
          f"{self.output_units} parameters.")
    self.conv_layers = _gated_stack(GatedConv2DTranspose, DECODER_LAYERS,
                                    "gated")
    self.head = keras.layers.Conv2D(IMAGE_SHAPE[-1], 1, name="logits",
                                    dtype="float32")

  def build(self, input_shape: Sequence[int | None]) -> None:
    latent_dim = input_shape[-1]
    if latent_dim is None:
      raise ValueError(f"GatedConvDecoder needs a known latent size, got input "
                       f"shape {input_shape}.")
    shape = _build_stack(self.conv_layers, (None, 1, 1, int(latent_dim)))
    if tuple(shape[1:3]) != IMAGE_SHAPE[:2]:  # The layer table's invariant.
      raise AssertionError(f"Decoder features of shape {shape}.")
    if not self.head.built:
      self.head.build(shape)
    self.built = True

  def call(self, z: tf.Tensor, training: bool = False) -> tf.Tensor:
    """z: [N, d] -> logits [N, 784] float32."""
    h = tf.reshape(z, [-1, 1, 1, z.shape[-1]])
    for layer in self.conv_layers:
      h = layer(h, training=training)
    return tf.reshape(self.head(h), [-1, self.output_units])

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(output_units=self.output_units,
                  image_shape=list(self.image_shape))
    return config
