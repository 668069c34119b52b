"""The priors p(z) of the latent code, registered by name (`model.prior`).

`StandardNormalPrior` (closed-form KL with the Gaussian posterior),
`MixturePrior` (learnable mixture of Gaussians), `FlowPrior` (an invertible
flow over a standard normal); `make_prior(name, latent_dim, ...)`. `PRIORS`
is their `vib_flows.registry.Registry`. Every log-density is float32.
"""

from collections.abc import Sequence
import math
from typing import Any

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from vib_flows import flows
from vib_flows import registry
from vib_flows.distributions.posterior import TensorLike
from vib_flows.distributions.posterior import diagonal_gaussian

tfd = tfp.distributions


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


# model.prior name -> Prior subclass; the options of a prior are its
# constructor's arguments but latent_dim.
PRIORS = registry.Registry("prior", Prior, name_attribute="name_",
                           builder_arguments=("latent_dim",),
                           base_name="vib_flows.distributions.Prior")


@PRIORS.register("standard_normal")
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


@PRIORS.register("mixture")
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


@PRIORS.register("flow")
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

  Each prior gets the arguments here that are its options
  (`PRIORS.option_names(name)`): "mixture" num_components, "flow" flow_name,
  num_flows and flow_kwargs.

  Raises:
    ValueError: unknown name (lists the valid ones).
  """
  options = PRIORS.filter_options(name, dict(
      num_components=num_components, flow_name=flow_name,
      num_flows=num_flows, flow_kwargs=flow_kwargs))
  return PRIORS.create(name, latent_dim, name="prior", **options)


def prior_names() -> tuple[str, ...]:
  """The valid `model.prior` names, sorted."""
  return tuple(PRIORS.names())
