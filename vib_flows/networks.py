"""Encoder and generator networks (Keras 3 layers that return tensors only).

`Encoder`: x [B, *input_shape] (already normalized to the unit scale) ->
    loc [B, d], scale [B, d] of q0(z0|x) = N(loc, diag scale^2), with
    scale = softplus(a + scale_shift) + min_scale (Kingma & Welling 2014,
    Appendix C.2; Alemi et al. 2017 shift by -5), and
    context [B, C] features for amortized flows (van den Berg et al. 2018,
    Sec. 4), or None when context_dim is 0.
`MLP`: z [N, d] -> [N, output_units] float32 parameters of p(x|z) (decoder) or
    logits of p(y|z) (VIB classifier).
`TrueDecoder`: z [N, 2] -> [N, 64] float32 logits of the fixed true network
    of the synthetic data (`vib_flows.synthetic_truth`); no trainable weights.
`make_decoder(kind, output_units, ...)`: a VAE decoder of a kind in
    `DECODERS`.

Under a mixed-precision policy the hidden layers compute in float16 and the
output heads in float32 (the numbers that enter log-densities).
"""

import keras
import numpy as np
import tensorflow as tf

from vib_flows import synthetic_truth

DECODERS = ("learned", "true")


def _dense_stack(widths, activation, prefix):
  return [
      keras.layers.Dense(int(w), activation=activation, name=f"{prefix}_{i}")
      for i, w in enumerate(widths)
  ]


@keras.saving.register_keras_serializable(package="vib_flows")
class Encoder(keras.layers.Layer):
  """MLP encoder of q0(z0|x) and of the flow context; flattens its input.

  `loc, scale, context = encoder(x)`.

  Args:
    latent_dim: d.
    hidden: widths of the hidden layers.
    activation: hidden activation.
    min_scale: floor added to the softplus scale.
    context_dim: C, width of the context features (0: none).
    scale_shift: s in scale = softplus(a + s) + min_scale; Alemi et al.
      2017 use -5, so that the posterior starts narrow.
    centered_inputs: feed the network 2x - 1 (x in [0, 1] becomes [-1, 1],
      as Alemi et al. 2017) instead of x.
  """

  def __init__(self, latent_dim, hidden=(256, 256), activation="relu",
               min_scale=1e-4, context_dim=0, scale_shift=0.0,
               centered_inputs=False, **kwargs):
    super().__init__(**kwargs)
    self.latent_dim = int(latent_dim)
    self.hidden = tuple(int(w) for w in hidden)
    self.activation = activation
    self.min_scale = float(min_scale)
    self.context_dim = int(context_dim or 0)
    self.scale_shift = float(scale_shift)
    self.centered_inputs = bool(centered_inputs)
    self.hidden_layers = _dense_stack(self.hidden, activation, "hidden")
    self.loc_head = keras.layers.Dense(self.latent_dim, name="loc",
                                       dtype="float32")
    self.scale_head = keras.layers.Dense(self.latent_dim, name="scale",
                                         dtype="float32")
    self.context_head = None
    if self.context_dim:
      self.context_head = keras.layers.Dense(
          self.context_dim, activation=activation, name="context")

  def build(self, input_shape):
    size = int(np.prod(input_shape[1:], dtype=np.int64))
    shape = (None, size)
    for layer in self.hidden_layers:
      layer.build(shape)
      shape = (None, layer.units)
    for head in (self.loc_head, self.scale_head, self.context_head):
      if head is not None:
        head.build(shape)
    self.built = True

  def call(self, x, training=False):
    """x: [B, *input_shape] -> (loc [B, d], scale [B, d], context|None).

    context: [B, C] or None.

    loc and scale are float32; context is in the compute dtype.
    """
    h = tf.reshape(x, [tf.shape(x)[0], -1])
    if self.centered_inputs:
      h = 2.0 * h - 1.0
    for layer in self.hidden_layers:
      h = layer(h, training=training)
    loc = self.loc_head(h)
    pre_scale = self.scale_head(h)
    if self.scale_shift:
      pre_scale = pre_scale + self.scale_shift
    scale = tf.math.softplus(pre_scale) + self.min_scale
    context = None if self.context_head is None else self.context_head(h)
    return loc, scale, context

  def get_config(self):
    config = super().get_config()
    config.update(latent_dim=self.latent_dim, hidden=self.hidden,
                  activation=self.activation, min_scale=self.min_scale,
                  context_dim=self.context_dim, scale_shift=self.scale_shift,
                  centered_inputs=self.centered_inputs)
    return config


@keras.saving.register_keras_serializable(package="vib_flows")
class MLP(keras.layers.Layer):
  """Generator / classifier MLP: [N, d] -> [N, output_units] float32.

  Args:
    output_units: width of the (linear, float32) output layer.
    hidden: widths of the hidden layers.
    activation: hidden activation.
  """

  def __init__(self, output_units, hidden=(256, 256), activation="relu",
               **kwargs):
    super().__init__(**kwargs)
    self.output_units = int(output_units)
    self.hidden = tuple(int(w) for w in hidden)
    self.activation = activation
    self.hidden_layers = _dense_stack(self.hidden, activation, "hidden")
    self.head = keras.layers.Dense(self.output_units, name="output",
                                   dtype="float32")

  def build(self, input_shape):
    shape = (None, int(input_shape[-1]))
    for layer in self.hidden_layers:
      layer.build(shape)
      shape = (None, layer.units)
    self.head.build(shape)
    self.built = True

  def call(self, z, training=False):
    h = z
    for layer in self.hidden_layers:
      h = layer(h, training=training)
    return self.head(h)

  def get_config(self):
    config = super().get_config()
    config.update(output_units=self.output_units, hidden=self.hidden,
                  activation=self.activation)
    return config


@keras.saving.register_keras_serializable(package="vib_flows")
class TrueDecoder(keras.layers.Layer):
  """The synthetic data's true network as a fixed (untrainable) decoder.

  `TrueDecoder(variant)(z)` is `synthetic_truth.true_logits(z, variant)` in
  float32: the Bernoulli logits of p(x|z) that generated the data, so a VAE
  with this decoder learns only its posterior, and log p(x) - ELBO is purely
  the cost of the approximate posterior, KL(q(z|x) || p(z|x)).

  Args:
    variant: one of `synthetic_truth.VARIANTS`.
  """

  def __init__(self, variant, **kwargs):
    kwargs.setdefault("trainable", False)
    super().__init__(**kwargs)
    if variant not in synthetic_truth.VARIANTS:
      raise ValueError(
          f"Unknown synthetic variant {variant!r}; valid: "
          f"{', '.join(synthetic_truth.VARIANTS)}.")
    self.variant = variant
    self.output_units = synthetic_truth.NUM_PIXELS

  def build(self, input_shape):
    if int(input_shape[-1]) != 2:
      raise ValueError(
          f"The true decoder reads a 2-D latent z, got shape {input_shape}; "
          "set model.latent_dim = 2.")
    self.built = True

  def call(self, z, training=False):
    return synthetic_truth.true_logits(tf.cast(z, tf.float32), self.variant)

  def get_config(self):
    config = super().get_config()
    config.update(variant=self.variant)
    return config


def make_decoder(kind, output_units, hidden=(256, 256), activation="relu",
                 variant=None, name="decoder"):
  """The VAE decoder of kind `kind` (one of `DECODERS`), `output_units` wide.

  Args:
    kind: "learned": an `MLP` with `hidden` widths and `activation`; "true":
      the fixed `TrueDecoder` of the synthetic data set `variant`.
    output_units: the likelihood's number of parameters per example.
    hidden: widths of the hidden layers ("learned").
    activation: hidden activation ("learned").
    variant: one of `synthetic_truth.VARIANTS` ("true").
    name: the layer's name.

  Raises:
    ValueError: an unknown kind, or "true" without a variant or with a
      likelihood whose parameters are not the 64 Bernoulli logits.
  """
  kind = str(kind)
  if kind not in DECODERS:
    raise ValueError(
        f"Unknown model.decoder {kind!r}; valid: {', '.join(DECODERS)}.")
  if kind == "learned":
    return MLP(output_units, hidden, activation, name=name)
  if variant is None:
    raise ValueError("The true decoder needs the synthetic data's variant.")
  if int(output_units) != synthetic_truth.NUM_PIXELS:
    raise ValueError(
        f"model.decoder='true' gives {synthetic_truth.NUM_PIXELS} Bernoulli "
        f"logits; the likelihood needs {output_units} parameters.")
  return TrueDecoder(variant, name=name)
