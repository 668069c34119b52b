"""The likelihoods p(x|z) and the VIB's p(y|z), registered by name.

Likelihoods p(x|z) (`model.likelihood`): `BernoulliLikelihood`,
`CategoricalLikelihood` (num_levels pixel intensities), `GaussianLikelihood`
(fixed or learned scale); `make_likelihood(name, event_shape, ...)`;
`LIKELIHOODS` is their `vib_flows.registry.Registry`. p(y|z) of the VIB:
`CategoricalLabels`. Every log-density is float32, whatever the
compute dtype.

Data representation reaching a likelihood: bernoulli: x in [0, 1] (binary);
categorical: integer levels 0..L-1 stored as float32; gaussian: x scaled to
[0, 1]. `likelihood.normalize(x)` maps it to the encoder's input scale and
`likelihood.validate(x)` refuses values outside the support
(`vib_flows.distributions.support`).
"""

from collections.abc import Sequence
import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from vib_flows import registry
from vib_flows.distributions import support
from vib_flows.distributions.posterior import TensorLike
from vib_flows.distributions.posterior import diagonal_gaussian

tfd = tfp.distributions

GAUSSIAN_MIN_SCALE = 1e-3  # Floor of a learned Gaussian likelihood scale.


class Likelihood(keras.layers.Layer):
  """p(x|z) over an event of shape `event_shape`, from generator outputs.

  The generator outputs `num_params` numbers per example; `log_prob(params, x)`
  is [N] float32 (summed over the event), `mean(params)` is [N, *event_shape]
  in the data's units. `normalize(x)` maps data to the encoder's input scale;
  `validate(x)` raises ValueError for values outside the support.
  """

  name_ = "likelihood"
  params_per_element = 1

  def __init__(self, event_shape: Sequence[int], **kwargs: Any):
    kwargs.setdefault("dtype", "float32")
    super().__init__(**kwargs)
    self.event_shape = tuple(int(s) for s in event_shape)
    self.event_size = int(np.prod(self.event_shape, dtype=np.int64))

  @property
  def num_params(self) -> int:
    """Generator outputs per example: event size x parameters per element."""
    return self.event_size * self.params_per_element

  def build(self, input_shape: Sequence[int | None] | None = None) -> None:
    self.built = True

  def call(self, params: TensorLike, x: TensorLike) -> tf.Tensor:
    """Log p(x|params) (`log_prob`)."""
    return self.log_prob(params, x)

  def _flat(self, x: TensorLike) -> tf.Tensor:
    return tf.reshape(tf.cast(x, tf.float32), [-1, self.event_size])

  def normalize(self, x: TensorLike) -> tf.Tensor:
    """X [N, *event_shape] in data units -> the encoder's input scale."""
    return tf.cast(x, tf.float32)

  def log_prob(self, params: TensorLike, x: TensorLike) -> tf.Tensor:
    """Log p(x|params): params [N, num_params], x [N, *event] -> [N]."""
    raise NotImplementedError

  def mean(self, params: TensorLike) -> tf.Tensor:
    """E[x|params], shape [N, *event_shape], in data units."""
    raise NotImplementedError

  def validate(self, x: np.ndarray) -> None:
    """Raises ValueError for values of x outside the support."""
    raise NotImplementedError

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(event_shape=self.event_shape)
    return config


# model.likelihood name -> Likelihood subclass; the options of a likelihood
# are its constructor's arguments but event_shape.
LIKELIHOODS = registry.Registry(
    "likelihood", Likelihood, name_attribute="name_",
    builder_arguments=("event_shape",),
    base_name="vib_flows.distributions.Likelihood")


@LIKELIHOODS.register("bernoulli")
class BernoulliLikelihood(Likelihood):
  """Independent Bernoulli pixels: params are logits [N, D]; x in [0, 1].

  log p(x | l) = sum_i [x_i log sigmoid(l_i) + (1 - x_i) log sigmoid(-l_i)]
               = sum_i [x_i l_i - softplus(l_i)],

  TFP's `Bernoulli(logits=l).log_prob(x)` (also for grey values x, the
  cross-entropy), written with one softplus per pixel instead of two: the
  per-pixel density is most of the importance-weighted evaluation's
  element-wise work at MNIST scale (docs/performance.md).
  """

  def log_prob(self, params: TensorLike, x: TensorLike) -> tf.Tensor:
    logits = tf.cast(params, tf.float32)
    x = tf.cast(self._flat(x), tf.float32)
    return tf.reduce_sum(x * logits - tf.math.softplus(logits), axis=-1)

  def mean(self, params: TensorLike) -> tf.Tensor:
    return tf.reshape(tf.sigmoid(tf.cast(params, tf.float32)),
                      (-1,) + self.event_shape)

  def validate(self, x: np.ndarray) -> None:
    support.check_unit_interval(x, "bernoulli likelihood")


@LIKELIHOODS.register("categorical")
class CategoricalLikelihood(Likelihood):
  """Independent categorical pixels over L intensity levels 0..L-1.

  params: logits [N, D * L]. x: integer levels stored as float. The encoder sees
  x / (L - 1); `mean` is the expected level sum_l l p_l (data units).

  Args:
    event_shape: pixel array shape.
    num_levels: L.
  """

  def __init__(self, event_shape: Sequence[int], num_levels: int,
               **kwargs: Any):
    super().__init__(event_shape, **kwargs)
    self.num_levels = int(num_levels)
    if self.num_levels < 2:
      raise ValueError(f"num_levels must be >= 2, got {num_levels}.")
    self.params_per_element = self.num_levels

  def _logits(self, params: TensorLike) -> tf.Tensor:
    return tf.reshape(tf.cast(params, tf.float32),
                      [-1, self.event_size, self.num_levels])

  def log_prob(self, params: TensorLike, x: TensorLike) -> tf.Tensor:
    levels = tf.cast(tf.round(self._flat(x)), tf.int32)
    return tfd.Independent(tfd.Categorical(logits=self._logits(params)),
                           1).log_prob(levels)

  def mean(self, params: TensorLike) -> tf.Tensor:
    probs = tf.nn.softmax(self._logits(params), axis=-1)
    levels = tf.range(self.num_levels, dtype=tf.float32)
    return tf.reshape(tf.reduce_sum(probs * levels, -1),
                      (-1,) + self.event_shape)

  def normalize(self, x: TensorLike) -> tf.Tensor:
    return tf.cast(x, tf.float32) / float(self.num_levels - 1)

  def validate(self, x: np.ndarray) -> None:
    support.check_levels(x, self.num_levels)

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(num_levels=self.num_levels)
    return config


@LIKELIHOODS.register("gaussian")
class GaussianLikelihood(Likelihood):
  """Independent Gaussian pixels N(x; mu, s^2): params are the means mu [N, D].

  The scale is fixed (`scale > 0`) or learned (`scale = 0`): one weight per
  pixel, s = softplus(raw) + GAUSSIAN_MIN_SCALE (the floor bounds the density of
  constant pixels). The mean is the generator output itself (no squashing).

  Args:
    event_shape: pixel array shape.
    scale: fixed standard deviation, or 0 to learn it.
  """

  def __init__(self, event_shape: Sequence[int], scale: float = 0.0,
               **kwargs: Any):
    super().__init__(event_shape, **kwargs)
    self.fixed_scale = float(scale)
    if self.fixed_scale < 0:
      raise ValueError(f"gaussian scale must be >= 0, got {scale}.")
    self.build(None)

  def build(self, input_shape: Sequence[int | None] | None = None) -> None:
    if self.built:
      return
    if self.fixed_scale == 0.0:
      self.raw_scale = self.add_weight(
          name="raw_scale", shape=(self.event_size,),
          initializer=keras.initializers.Constant(
              math.log(math.expm1(0.1))),  # s = 0.1 + floor at start.
      )
    self.built = True

  def scale(self) -> tf.Tensor:
    """The standard deviation s: a scalar (fixed) or [D] (learned)."""
    if self.fixed_scale > 0:
      return tf.constant(self.fixed_scale, tf.float32)
    return (tf.math.softplus(tf.convert_to_tensor(self.raw_scale))
            + GAUSSIAN_MIN_SCALE)

  def log_prob(self, params: TensorLike, x: TensorLike) -> tf.Tensor:
    loc = tf.cast(params, tf.float32)
    scale = self.scale() + tf.zeros_like(loc)
    return diagonal_gaussian(loc, scale).log_prob(self._flat(x))

  def mean(self, params: TensorLike) -> tf.Tensor:
    return tf.reshape(tf.cast(params, tf.float32), (-1,) + self.event_shape)

  def validate(self, x: np.ndarray) -> None:
    support.check_finite(np.asarray(x), "gaussian likelihood data")

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(scale=self.fixed_scale)
    return config


def make_likelihood(name: str, event_shape: Sequence[int],
                    num_levels: int | None = None,
                    gaussian_scale: float = 0.0) -> Likelihood:
  """Returns the likelihood layer `name` (one of `likelihood_names()`).

  Each likelihood gets the arguments here that are its options
  (`LIKELIHOODS.option_names(name)`): "categorical" num_levels, "gaussian"
  its scale (0: learned).

  Raises:
    ValueError: unknown name (lists the valid ones), or missing num_levels.
  """
  options = LIKELIHOODS.filter_options(
      name, dict(num_levels=num_levels, scale=gaussian_scale))
  if "num_levels" in options and not num_levels:
    raise ValueError(f"The {name} likelihood needs num_levels.")
  return LIKELIHOODS.create(name, event_shape, name="likelihood", **options)


def likelihood_names() -> tuple[str, ...]:
  """The valid `model.likelihood` names, sorted."""
  return tuple(LIKELIHOODS.names())


@keras.saving.register_keras_serializable(package="vib_flows")
class CategoricalLabels(keras.layers.Layer):
  """p(y|z) = Categorical(softmax(logits)) over num_classes labels (the VIB).

  `log_prob(logits [N, C], y [N])` -> [N] float32.
  """

  def __init__(self, num_classes: int, **kwargs: Any):
    kwargs.setdefault("dtype", "float32")
    super().__init__(**kwargs)
    self.num_classes = int(num_classes)
    if self.num_classes < 2:
      raise ValueError(f"num_classes must be >= 2, got {num_classes}.")

  @property
  def num_params(self) -> int:
    """Generator outputs per example: the logits of the C classes."""
    return self.num_classes

  def build(self, input_shape: Sequence[int | None] | None = None) -> None:
    self.built = True

  def call(self, logits: TensorLike, y: TensorLike) -> tf.Tensor:
    """Log p(y|logits) (`log_prob`)."""
    return self.log_prob(logits, y)

  def log_prob(self, logits: TensorLike, y: TensorLike) -> tf.Tensor:
    """Log p(y|logits): logits [N, C], y [N] integers -> [N] float32."""
    return tfd.Categorical(logits=tf.cast(logits, tf.float32)).log_prob(
        tf.cast(y, tf.int32))

  def probs(self, logits: TensorLike) -> tf.Tensor:
    """Class probabilities softmax(logits): [N, C] -> [N, C] float32."""
    return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)

  def validate(self, y: np.ndarray) -> None:
    """Raises ValueError unless every label is an integer in 0..C-1."""
    support.validate_labels(y, self.num_classes)

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(num_classes=self.num_classes)
    return config
