"""Coupling flows: affine (Real NVP) and rational-quadratic spline (NSF).

A coupling layer splits z [..., d] into a conditioning part z_A, left
unchanged, and a transformed part z_B whose elementwise transform takes its
parameters from a network of z_A (and of the context, for amortized flows):

    z'_A = z_A,     z'_B = tau(z_B; theta),     theta = NN(z_A, context)
    log|det dz'/dz| = sum_{i in B} log|d tau / d z_i|

The Jacobian is block triangular, so forward and inverse are one network pass
each. The partition is contiguous: with n_B = ceil(d / 2), B is the last n_B
coordinates; `flows.make_stack` puts a `Reverse` between coupling layers so
that every coordinate is transformed. For d = 1, A is empty: the
network sees only the context (amortized) or nothing (global: theta is a learned
constant), which still gives a valid elementwise flow.

Real NVP (Dinh et al. 2017, "Density Estimation Using Real NVP"), affine:

    z'_B = z_B * exp(s) + t,    s = B * tanh(s_raw / B),    log-det sum_B s

with the log-scale softly bounded by B = `max_log_scale` so that no weight makes
the scales overflow.

Neural spline flow (Durkan et al. 2019, "Neural Spline Flows"),
rational-quadratic coupling: tau is a monotone rational-quadratic spline with
K = `num_bins` bins on [-bound, bound] and the identity outside it (linear
tails, unit end slopes).
In bin k, with knots (x_k, y_k), width w, height h, s = h / w, knot slopes
d_k, d_{k+1} and xi = (x - x_k) / w in [0, 1] (Eqs. 4-6 and Appendix A):

    tau(x) = y_k + h (s xi^2 + d_k xi (1 - xi)) / (s + c xi (1 - xi)),
    tau'(x) = s^2 (d_{k+1} xi^2 + 2 s xi (1 - xi) + d_k (1 - xi)^2)
              / (s + c xi (1 - xi))^2,            c = d_{k+1} + d_k - 2 s,

and the inverse solves the quadratic a xi^2 + b xi + q = 0 with the root
xi = 2 q / (-b - sqrt(b^2 - 4 a q)), stable in floating point. Bin widths and
heights are 2 * bound * (delta / K + (1 - delta) * softmax(raw)), so each is at
least delta = `min_bin_fraction` (0.1) of a uniform bin, and the interior knot
slopes are exp(3 tanh(raw / 3)), within [e^-3, e^3]. These bounds keep tau'
within about [e^-12, e^6] for any weights: with free softmax bins (min size
1e-3) random weights give derivatives of e^-20, where the inverse loses half the
digits even in float64. The spline itself is in `functional.py`. Under 16-bit
compute dtypes the network and the spline run in float32 (`Flow.math_dtype`):
knot sums and bin searches in float16 would put the knots off by ~1e-2.

Both layers start as the identity (zero-initialized output layer: s = t = 0,
uniform bins with unit slopes).

Shapes: z, z' [..., d]; context [..., C]; log-dets [...]. The leading axes of z
and of the context broadcast against each other (`base.Flow`): the conditioner
takes z_A [..., n_A] and the context as they are and adds each context term,
computed once on the context's own leading shape, to its hidden units
(`conditioners.ConditionerMLP`); with z [S, B, d] and context [B, C] the
context goes through the network B times. All maths is `keras.ops` (every
Keras backend; no data-dependent shapes, so it runs under `jax.jit`).
"""

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from vib_flows.flows import base
from vib_flows.flows import conditioners
from vib_flows.flows import functional
from vib_flows.flows import registry


@keras.saving.register_keras_serializable(package="vib_flows")
class CouplingConditioner(keras.layers.Layer):
  """MLP `theta = net(z_A, context=None)`: [..., n_A] -> [..., n_B, P].

  Two ELU hidden layers; the context [..., C] feeds both, its leading axes
  broadcast against z_A's. With n_A = 0 and no context the output is a learned
  constant (broadcast over z_A's leading axes). The output layer is
  zero-initialized. The network is an unmasked `conditioners.ConditionerMLP`.

  Args:
    input_dim: n_A (may be 0).
    output_dim: n_B.
    num_params: P, parameters per transformed coordinate.
    hidden_units: width of the hidden layers.
    context_dim: C, or None for a global flow.
    **kwargs: passed to `keras.layers.Layer`.
  """

  num_hidden_layers = 2

  def __init__(self, input_dim: int, output_dim: int, num_params: int,
               hidden_units: int = 64, context_dim: int | None = None,
               **kwargs: Any):
    super().__init__(**kwargs)
    self.input_dim = int(input_dim)
    self.output_dim = int(output_dim)
    self.num_params = int(num_params)
    self.hidden_units = int(hidden_units)
    self.context_dim = None if context_dim is None else int(context_dim)
    self.net = conditioners.ConditionerMLP(
        self.input_dim, self.output_dim, self.num_params, self.hidden_units,
        self.num_hidden_layers, context_dim=self.context_dim,
        dtype=self.dtype_policy, name="mlp")

  def build(self, input_shape: Sequence[int | None] | None = None) -> None:
    del input_shape
    self.net.build((None, self.input_dim))

  def call(self, z_a: Any, context: Any = None) -> Any:
    """Returns theta [..., n_B, P]."""
    if self.context_dim and context is None:
      raise ValueError("This conditioner was built with context_dim and needs "
                       "a context.")
    return self.net(z_a, context=context)

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(input_dim=self.input_dim, output_dim=self.output_dim,
                  num_params=self.num_params, hidden_units=self.hidden_units,
                  context_dim=self.context_dim)
    return config


class _CouplingFlow(base.Flow):
  """Split, condition, transform z_B elementwise, merge (see module docstring).

  Subclasses set `num_params` and implement `transform(z_b, theta, inverse)`
  returning (tau(z_b), or tau^-1(z_b) if inverse, and the elementwise forward
  log|d tau / d z| [..., n_B] at the point on the forward's input side).

  Args:
    hidden_units: width of the conditioner's two hidden layers.
    **kwargs: `base.Flow` arguments (dim, context_dim, amortized, name, dtype).
  """

  invertible = True
  needs_permutation = True

  @property
  def num_params(self) -> int:
    """P, the conditioner's outputs per transformed coordinate (subclasses)."""
    raise NotImplementedError

  def __init__(self, hidden_units: int = 64, **kwargs: Any):
    self.hidden_units = int(hidden_units)
    super().__init__(**kwargs)

  def build_flow(self, dim: int) -> None:
    self.num_transformed = (dim + 1) // 2
    self.conditioner = CouplingConditioner(
        dim - self.num_transformed, self.num_transformed, self.num_params,
        hidden_units=self.hidden_units,
        context_dim=self.context_dim if self.amortized else None,
        dtype=self.sublayer_dtype, name="conditioner")
    self.conditioner.build((None, dim - self.num_transformed))

  def split(self, z: Any) -> tuple[Any, Any]:
    """(z_A [..., d - n_B], z_B [..., n_B]); z_B: the last n_B coords."""
    n_a = self.event_size - self.num_transformed
    return z[..., :n_a], z[..., n_a:]

  def merge(self, z_a: Any, z_b: Any) -> Any:
    """Returns [z_A, z_B] [*L, d].

    Both have z's leading shape L: `base.Flow` broadcasts z to it, and the
    parameters (from z_A and the context) broadcast into it.
    """
    return ops.concatenate([z_a, z_b], axis=-1)

  def _apply(self, z, context, inverse):
    z_a, z_b = self.split(z)
    theta = self.conditioner(z_a, context=context)
    z_b, log_det = self.transform(z_b, theta, inverse)
    log_det = self.sum_log_det(log_det)
    return self.merge(z_a, z_b), -log_det if inverse else log_det

  def forward_and_log_det(self, z: Any, context: Any) -> tuple[Any, Any]:
    return self._apply(z, context, inverse=False)

  def inverse_and_log_det(self, y: Any, context: Any) -> tuple[Any, Any]:
    return self._apply(y, context, inverse=True)

  def transform(self, z_b: Any, theta: Any, inverse: bool
                ) -> tuple[Any, Any]:
    raise NotImplementedError

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(hidden_units=self.hidden_units)
    return config


@registry.register("real_nvp")
class RealNVP(_CouplingFlow):
  """Affine coupling (Real NVP, Dinh et al. 2017): z'_B = z_B * exp(s) + t.

  log|det dz'/dz| = sum_{i in B} s_i, s bounded by `max_log_scale`.

  (t, s_raw) = NN(z_A, context),
  s = max_log_scale * tanh(s_raw / max_log_scale).
  See the module docstring.

  Args:
    hidden_units: conditioner width.
    **kwargs: `base.Flow` arguments.
  """

  num_params = 2
  max_log_scale = 3.0

  def transform(self, z_b: Any, theta: Any, inverse: bool
                ) -> tuple[Any, Any]:
    shift = theta[..., 0]
    log_scale = functional.bounded_log_scale(theta[..., 1], self.max_log_scale)
    if inverse:
      return (z_b - shift) * ops.exp(-log_scale), log_scale
    return z_b * ops.exp(log_scale) + shift, log_scale


@registry.register("spline")
class RationalQuadraticSplineCoupling(_CouplingFlow):
  """Rational-quadratic spline coupling (Durkan et al. 2019).

  z'_B = RQS(z_B; widths, heights, slopes), identity outside [-bound, bound];
  log|det dz'/dz| = sum_{i in B} log RQS'(z_i) (`functional.py`, Eq. 5 of
  the paper). See the module docstring.

  Args:
    hidden_units: conditioner width.
    num_bins: K, the number of spline bins.
    bound: the spline acts on [-bound, bound].
    **kwargs: `base.Flow` arguments.
  """

  min_bin_fraction = 0.1
  max_log_slope = 3.0

  def __init__(self, hidden_units: int = 64, num_bins: int = 8,
               bound: float = 5.0, **kwargs: Any):
    self.num_bins = int(num_bins)
    self.bound = float(bound)
    if self.num_bins < 1 or self.bound <= 0:
      raise ValueError(
          "spline: num_bins must be >= 1 and bound > 0, got "
          f"{num_bins}, {bound}."
      )
    super().__init__(hidden_units=hidden_units, **kwargs)

  @property
  def num_params(self) -> int:
    return 3 * self.num_bins - 1  # widths K, heights K, interior slopes K - 1.

  def transform(self, z_b: Any, theta: Any, inverse: bool
                ) -> tuple[Any, Any]:
    k = self.num_bins
    delta = self.min_bin_fraction

    def bins(raw):  # Uniform bins at raw = 0.
      return 2 * self.bound * (delta / k + (1 - delta) * ops.softmax(raw))

    # Unit slopes at raw = 0: with uniform bins, the identity.
    slopes = ops.exp(functional.bounded_log_scale(theta[..., 2 * k:],
                                                  self.max_log_slope))
    out, log_det = functional.rational_quadratic_spline(
        z_b, bins(theta[..., :k]), bins(theta[..., k:2 * k]), slopes,
        self.bound, inverse)
    return out, log_det

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(num_bins=self.num_bins, bound=self.bound)
    return config
