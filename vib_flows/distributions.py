"""Posterior, priors and likelihoods of the VAE and the VIB.

Built on TensorFlow Probability.

TFP 0.25's `tfp.layers` do not work with Keras 3, so the Keras layers here hold
the weights and return tensors; TFP distributions are built inside their methods
only to evaluate log-densities. Every log-density is float32, whatever the
compute dtype (mixed precision).

Posterior (Kingma & Welling 2014, "Auto-Encoding Variational Bayes"): a diagonal
Gaussian q0(z0|x) = N(mu(x), diag sigma(x)^2), sampled by reparameterization

    z0 = mu + sigma * eps,      eps ~ N(0, I),

from stateless random ops driven by an explicit seed (an integer tensor of shape
[2]), so that runs repeat and a SavedModel can sample in the C++ runtime. A flow
turns z0 into zK (Rezende & Mohamed 2015; van den Berg et al. 2018) and

    log qK(zK|x) = log q0(z0|x) - sum_k log|det df_k/dz_{k-1}|.

Names: the config's model.prior and model.likelihood name a registered class
(`prior_names()`, `likelihood_names()`; `make_prior`, `make_likelihood`), as
`vib_flows.flows.names()` does for the flows.

Priors p(z): `StandardNormalPrior` (closed-form KL with the Gaussian posterior),
`MixturePrior` (learnable mixture of Gaussians), `FlowPrior` (an invertible flow
over a standard normal). Likelihoods p(x|z): `BernoulliLikelihood`,
`CategoricalLikelihood` (num_levels pixel intensities), `GaussianLikelihood`
(fixed or learned scale); p(y|z) for the VIB: `CategoricalLabels`.

Data representation reaching a likelihood: bernoulli: x in [0, 1] (binary);
categorical: integer levels 0..L-1 stored as float32; gaussian: x scaled to
[0, 1]. `likelihood.normalize(x)` maps it to the encoder's input scale and
`likelihood.validate(x)` refuses values outside the support.
"""

from collections.abc import Callable
from collections.abc import Sequence
import inspect
import math
from typing import Any, TypeVar

import keras
import numpy as np
import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla as tf2xla
from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.ops import control_flow_util
import tensorflow_probability as tfp

from vib_flows import flows

tfd = tfp.distributions
TensorLike = Any  # tf.Tensor, np.ndarray or a Python number.

GAUSSIAN_MIN_SCALE = 1e-3  # Floor of a learned Gaussian likelihood scale.
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_PRIORS: dict[str, type] = {}  # model.prior name -> Prior subclass.
_LIKELIHOODS: dict[str, type] = {}  # model.likelihood name -> Likelihood.
_T = TypeVar("_T")
_AUTO_SELECT_ALGORITHM = 3  # tf.random.Algorithm.AUTO_SELECT.value.


def _register(registry: dict[str, type], name: str) -> Callable[[_T], _T]:
  """Class decorator: `registry[name] = cls`, and Keras serialization."""

  def decorator(cls: Any) -> Any:
    if name in registry:
      raise ValueError(f"{name!r} is already registered.")
    cls = keras.saving.register_keras_serializable(package="vib_flows")(cls)
    cls.name_ = name
    registry[name] = cls
    return cls

  return decorator


def prior_names() -> tuple[str, ...]:
  """The valid `model.prior` names, in registration order."""
  return tuple(_PRIORS)


def likelihood_names() -> tuple[str, ...]:
  """The valid `model.likelihood` names, in registration order."""
  return tuple(_LIKELIHOODS)


# ------------------------------------------------------------------ posterior
def stateless_standard_normal(shape: TensorLike,
                              seed: TensorLike) -> tf.Tensor:
  """Eps ~ N(0, I) of `shape`: `tf.random.stateless_normal(shape, seed)`.

  The same numbers, op for op, as `tf.random.stateless_normal` (key and
  counter from the seed, then the counter-based generator, "auto_select"
  algorithm). Inside an XLA compilation an optimization barrier separates
  the two: otherwise XLA's CPU backend fuses the seed scrambling (and the
  seed's own derivation, e.g. `stateless_fold_in`) into the loop over the
  output and recomputes it for every element, which made drawing the VIB's
  [1, 128, 256] noise cost more than its largest matmul
  (research/vib_xla_probe.py, docs/performance.md).

  Args:
    shape: 1-D int, the output shape.
    seed: int32/int64 tensor [2].

  Returns:
    float32 tensor of `shape`.
  """
  key, counter = tf.raw_ops.StatelessRandomGetKeyCounter(seed=seed)
  # Only under XLA: the barrier is an XLA op, and a SavedModel served by the
  # C++ runtime must not contain it.
  if control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph()):
    key, counter = tf2xla.optimization_barrier(key, counter)
  return tf.raw_ops.StatelessRandomNormalV2(
      shape=shape, key=key, counter=counter, alg=_AUTO_SELECT_ALGORITHM,
      dtype=tf.float32)


def sample_diagonal_gaussian(loc: TensorLike, scale: TensorLike,
                             num_samples: TensorLike,
                             seed: TensorLike) -> tf.Tensor:
  """Reparameterized samples z = loc + scale * eps of N(loc, diag scale^2).

  Args:
    loc: [B, d] float32 means.
    scale: [B, d] float32 standard deviations (> 0).
    num_samples: S, samples per example (int or scalar int tensor).
    seed: int32/int64 tensor [2], the stateless seed.

  Returns:
    z: [S, B, d] float32, differentiable w.r.t. loc and scale.
  """
  loc = tf.convert_to_tensor(loc, tf.float32)
  scale = tf.convert_to_tensor(scale, tf.float32)
  shape = tf.concat([[num_samples], tf.shape(loc)], axis=0)
  eps = stateless_standard_normal(shape, seed)
  return loc + scale * eps


def diagonal_gaussian(loc: TensorLike,
                      scale: TensorLike) -> tfp.distributions.Distribution:
  """The TFP distribution N(loc, diag scale^2), event shape [d]."""
  return tfd.Independent(tfd.Normal(loc, scale), reinterpreted_batch_ndims=1)


def diagonal_gaussian_log_prob(z: TensorLike, loc: TensorLike,
                               scale: TensorLike) -> tf.Tensor:
  """Log N(z; loc, diag scale^2), summed over the last axis.

  Args:
    z: [..., B, d] points (broadcast against loc/scale [B, d]).
    loc: [B, d] means.
    scale: [B, d] standard deviations.

  Returns:
    [..., B] float32 log-densities.
  """
  z = tf.cast(z, tf.float32)
  return diagonal_gaussian(
      tf.cast(loc, tf.float32), tf.cast(scale, tf.float32)
  ).log_prob(z)


def kl_diagonal_gaussians(loc_q: TensorLike, scale_q: TensorLike,
                          loc_p: TensorLike = 0.0,
                          scale_p: TensorLike = 1.0) -> tf.Tensor:
  """Closed-form KL(N(loc_q, diag scale_q^2) || N(loc_p, diag scale_p^2)).

      KL = sum_i [ log(s_p / s_q) + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2 ]

  (Kingma & Welling 2014, Appendix B, for the standard-normal prior.)

  Args:
    loc_q: [..., d] means of q.
    scale_q: [..., d] standard deviations of q.
    loc_p: means of p, broadcastable to [..., d]; default 0 (standard
      normal).
    scale_p: standard deviations of p, broadcastable to [..., d]; default 1.

  Returns:
    [...] float32, summed over the last axis.
  """
  loc_q, scale_q, loc_p, scale_p = (
      tf.cast(t, tf.float32) for t in (loc_q, scale_q, loc_p, scale_p)
  )
  loc_p = loc_p + tf.zeros_like(loc_q)
  scale_p = scale_p + tf.zeros_like(scale_q)
  terms = (
      tf.math.log(scale_p) - tf.math.log(scale_q)
      + (tf.square(scale_q) + tf.square(loc_q - loc_p))
      / (2.0 * tf.square(scale_p))
      - 0.5
  )
  return tf.reduce_sum(terms, axis=-1)


# --------------------------------------------------------------------- priors
def standard_normal_log_prob(z: TensorLike) -> tf.Tensor:
  """Log N(z; 0, I) summed over the last axis: [..., d] -> [...] float32."""
  z = tf.cast(z, tf.float32)
  return tfd.Independent(
      tfd.Normal(tf.zeros_like(z), tf.ones_like(z)), 1
  ).log_prob(z)


class Prior(keras.layers.Layer):
  """A prior p(z) over R^d: `log_prob(z)` [N] and `sample(n, seed)` [n, d].

  `is_standard_normal` says whether the KL with a Gaussian posterior has the
  closed form of `kl_diagonal_gaussians`. Priors compute in float32.
  """

  is_standard_normal = False
  built: bool  # Keras's flag, declared: the type checker sees no Keras types.

  def __init__(self, latent_dim: int, **kwargs: Any):
    kwargs.setdefault("dtype", "float32")
    super().__init__(**kwargs)
    self.latent_dim = int(latent_dim)

  def call(self, z: TensorLike) -> tf.Tensor:
    """Log p(z) (`log_prob`)."""
    return self.log_prob(z)

  def log_prob(self, z: TensorLike) -> tf.Tensor:
    """Log p(z): z [N, d] -> [N] float32."""
    raise NotImplementedError

  def sample(self, n: TensorLike, seed: TensorLike) -> tf.Tensor:
    """N samples [n, d] float32 from the stateless `seed` (int [2])."""
    raise NotImplementedError

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(latent_dim=self.latent_dim)
    return config


@_register(_PRIORS, "standard_normal")
class StandardNormalPrior(Prior):
  """p(z) = N(0, I_d); no weights."""

  is_standard_normal = True

  def build(self, input_shape: Sequence[int | None] | None = None) -> None:
    self.built = True

  def log_prob(self, z: TensorLike) -> tf.Tensor:
    """z: [N, d] -> [N] float32."""
    return standard_normal_log_prob(z)

  def sample(self, n: TensorLike, seed: TensorLike) -> tf.Tensor:
    return tf.random.stateless_normal(
        [n, self.latent_dim], seed=seed, dtype=tf.float32
    )


@_register(_PRIORS, "mixture")
class MixturePrior(Prior):
  """Learnable mixture of M diagonal Gaussians (as in VampPrior's MoG baseline).

      p(z) = sum_m pi_m N(z; mu_m, diag sigma_m^2),  pi = softmax(logits),
      sigma_m = softplus(raw_m) + 1e-4.

  Means are initialized N(0, 1), so the components start spread over the
  standard-normal region; scales start at 1.

  Args:
    latent_dim: d.
    num_components: M.
  """

  def __init__(self, latent_dim: int, num_components: int = 10,
               **kwargs: Any):
    super().__init__(latent_dim, **kwargs)
    self.num_components = int(num_components)
    self.build(None)

  def build(self, input_shape: Sequence[int | None] | None = None) -> None:
    if self.built:
      return
    m, d = self.num_components, self.latent_dim
    self.locs = self.add_weight(
        name="locs", shape=(m, d),
        initializer=keras.initializers.RandomNormal(stddev=1.0),
    )
    self.raw_scales = self.add_weight(
        name="raw_scales", shape=(m, d),
        initializer=keras.initializers.Constant(math.log(math.e - 1.0)),
    )
    self.logits = self.add_weight(
        name="logits", shape=(m,), initializer="zeros"
    )
    self.built = True

  def _scales(self) -> tf.Tensor:
    return tf.math.softplus(tf.convert_to_tensor(self.raw_scales)) + 1e-4

  def distribution(self) -> tfp.distributions.Distribution:
    """The mixture as a TFP distribution (event shape [d])."""
    return tfd.MixtureSameFamily(
        tfd.Categorical(logits=tf.convert_to_tensor(self.logits)),
        diagonal_gaussian(tf.convert_to_tensor(self.locs), self._scales()),
    )

  def log_prob(self, z: TensorLike) -> tf.Tensor:
    """z: [N, d] -> [N] float32."""
    return self.distribution().log_prob(tf.cast(z, tf.float32))

  def sample(self, n: TensorLike, seed: TensorLike) -> tf.Tensor:
    seed_c, seed_z = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    comp = tf.random.stateless_categorical(
        tf.convert_to_tensor(self.logits)[tf.newaxis], n, seed=seed_c
    )[0]
    eps = tf.random.stateless_normal(
        [n, self.latent_dim], seed=seed_z, dtype=tf.float32
    )
    return tf.gather(self.locs, comp) + tf.gather(self._scales(), comp) * eps

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(num_components=self.num_components)
    return config


@_register(_PRIORS, "flow")
class FlowPrior(Prior):
  """p(z) = N(u; 0, I) |det du/dz|, z = f(u), with f an invertible flow stack.

      log p(z) = log N(f^{-1}(z); 0, I) + log|det df^{-1}/dz|

  Needs flows with an analytic inverse (iaf, maf, real_nvp, spline); for iaf
  the density costs d passes, so maf/real_nvp/spline are the cheap choices.

  Args:
    latent_dim: d.
    flow_name: an invertible flow name of `vib_flows.flows`.
    num_flows: layers in the stack.
    **flow_kwargs: passed to each flow (e.g. hidden_units).
  """

  def __init__(self, latent_dim: int, flow_name: str = "real_nvp",
               num_flows: int = 2, flow_kwargs: dict[str, Any] | None = None,
               **kwargs: Any):
    super().__init__(latent_dim, **kwargs)
    cls = flows.registry.get_class(flow_name)
    if not cls.invertible:
      raise ValueError(
          f"A flow prior needs an invertible flow; {flow_name!r} has no "
          "analytic inverse. Invertible flows: "
          + ", ".join(
              n for n in flows.names() if flows.registry.get_class(n).invertible
          )
          + "."
      )
    self.flow_name = flow_name
    self.num_flows = int(num_flows)
    self.flow_kwargs = dict(flow_kwargs or {})
    self.stack = flows.make_stack(
        flow_name, self.num_flows, dim=self.latent_dim, dtype="float32",
        **self.flow_kwargs,
    )
    self.build(None)

  def build(self, input_shape: Sequence[int | None] | None = None) -> None:
    if self.built:
      return
    self.stack.build((None, self.latent_dim))
    self.built = True

  def log_prob(self, z: TensorLike) -> tf.Tensor:
    """z: [N, d] -> [N] float32, through the inverse of the flow."""
    u, log_det_inverse = self.stack.inverse(tf.cast(z, tf.float32))
    return standard_normal_log_prob(u) + tf.cast(log_det_inverse, tf.float32)

  def sample(self, n: TensorLike, seed: TensorLike) -> tf.Tensor:
    u = tf.random.stateless_normal(
        [n, self.latent_dim], seed=seed, dtype=tf.float32
    )
    return tf.cast(self.stack(u)[0], tf.float32)

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(flow_name=self.flow_name, num_flows=self.num_flows,
                  flow_kwargs=self.flow_kwargs)
    return config


def make_prior(name: str, latent_dim: int, num_components: int = 10,
               flow_name: str = "real_nvp", num_flows: int = 2,
               flow_kwargs: dict[str, Any] | None = None) -> Prior:
  """Returns the prior layer `name` (one of `prior_names()`), named "prior".

  Each prior takes the arguments it needs: "mixture" num_components, "flow"
  flow_name, num_flows and flow_kwargs.

  Raises:
    ValueError: unknown name (lists the valid ones).
  """
  if name not in _PRIORS:
    raise ValueError(
        f"Unknown prior {name!r}; valid priors: {', '.join(prior_names())}.")
  cls = _PRIORS[name]
  options = accepted_kwargs(cls, dict(
      num_components=num_components, flow_name=flow_name,
      num_flows=num_flows, flow_kwargs=flow_kwargs))
  return cls(latent_dim, name="prior", **options)


# ---------------------------------------------------------------- likelihoods
def _check_finite(x: np.ndarray, what: str) -> None:
  if not np.all(np.isfinite(x)):
    bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
    raise ValueError(f"{what}: {bad} values are NaN or infinite.")


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


@_register(_LIKELIHOODS, "bernoulli")
class BernoulliLikelihood(Likelihood):
  """Independent Bernoulli pixels: params are logits [N, D]; x in [0, 1]."""

  def log_prob(self, params: TensorLike, x: TensorLike) -> tf.Tensor:
    logits = tf.cast(params, tf.float32)
    return tfd.Independent(tfd.Bernoulli(logits=logits, dtype=tf.float32),
                           1).log_prob(self._flat(x))

  def mean(self, params: TensorLike) -> tf.Tensor:
    return tf.reshape(tf.sigmoid(tf.cast(params, tf.float32)),
                      (-1,) + self.event_shape)

  def validate(self, x: np.ndarray) -> None:
    x = np.asarray(x)
    _check_finite(x, "bernoulli likelihood data")
    if x.size and (x.min() < 0 or x.max() > 1):
      raise ValueError(
          f"bernoulli likelihood needs data in [0, 1]; got values in "
          f"[{x.min()}, {x.max()}]."
      )


@_register(_LIKELIHOODS, "categorical")
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
    x = np.asarray(x)
    _check_finite(x, "categorical likelihood data")
    if x.size == 0:
      return
    if x.min() < 0 or x.max() > self.num_levels - 1:
      raise ValueError(
          "categorical likelihood needs integer levels in "
          f"0..{self.num_levels - 1}"
          f" (model.num_levels={self.num_levels}); got values in "
          f"[{x.min()}, {x.max()}]."
      )
    if np.any(x != np.round(x)):
      raise ValueError(
          "categorical likelihood needs integer levels; got non-integer values"
          f" such as {x[x != np.round(x)].flat[0]}."
      )

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(num_levels=self.num_levels)
    return config


@_register(_LIKELIHOODS, "gaussian")
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
    x = np.asarray(x)
    _check_finite(x, "gaussian likelihood data")

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(scale=self.fixed_scale)
    return config


def make_likelihood(name: str, event_shape: Sequence[int],
                    num_levels: int | None = None,
                    gaussian_scale: float = 0.0) -> Likelihood:
  """Returns the likelihood layer `name` (one of `likelihood_names()`).

  "categorical" takes num_levels, "gaussian" its scale (0: learned).

  Raises:
    ValueError: unknown name (lists the valid ones), or missing num_levels.
  """
  if name not in _LIKELIHOODS:
    raise ValueError(
        f"Unknown likelihood {name!r}; valid likelihoods: "
        f"{', '.join(likelihood_names())}.")
  cls = _LIKELIHOODS[name]
  options = accepted_kwargs(cls, dict(num_levels=num_levels,
                                      scale=gaussian_scale))
  if "num_levels" in options and not num_levels:
    raise ValueError(f"The {name} likelihood needs num_levels.")
  return cls(event_shape, name="likelihood", **options)


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
    validate_labels(y, self.num_classes)

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(num_classes=self.num_classes)
    return config


def validate_labels(y: np.ndarray, num_classes: int) -> None:
  """Raises ValueError unless every label is an integer in 0..num_classes-1."""
  y = np.asarray(y)
  if y.size == 0:
    return
  if y.dtype.kind == "f":
    _check_finite(y, "labels")
    if np.any(y != np.round(y)):
      raise ValueError("labels must be integers; got non-integer values.")
  if y.min() < 0 or y.max() > num_classes - 1:
    raise ValueError(
        f"labels must be in 0..{num_classes - 1} (num_classes={num_classes});"
        f" got values in [{y.min()}, {y.max()}]."
    )


def accepted_kwargs(cls: type[keras.layers.Layer],
                    kwargs: dict[str, Any]) -> dict[str, Any]:
  """The subset of `kwargs` that `cls.__init__` names explicitly."""
  params = inspect.signature(cls.__init__).parameters
  return {k: v for k, v in kwargs.items() if k in params}
