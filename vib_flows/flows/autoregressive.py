"""Autoregressive flows: a MADE conditioner, IAF and MAF.

MADE (Germain et al. 2015, "MADE: Masked Autoencoder for Distribution
Estimation") is a dense network whose weight matrices are multiplied by fixed
binary masks so that output i depends only on the inputs that come before i in
an order pi (natural 1..d, or reversed d..1):

    params_i = MADE(z_{pi < pi(i)}, context),        params: [..., d, P]

Every input gets a degree m(j) = pi(j) in 1..d, every hidden unit a degree in
0..d-1; a unit sees the units of the layer below whose degree is <= its own, an
output of degree m(i) sees the last hidden units whose degree is < m(i). Units
of degree 0 see only the context, which feeds every hidden unit without a mask
(the `h` of Kingma et al. 2016), so that every output, the first one included,
depends on the context of an amortized flow. The Jacobian d params / dz is
strictly triangular in the order pi.

IAF (Kingma et al. 2016, "Improved Variational Inference with Inverse
Autoregressive Flow", Sec. 4 and Algorithm 1, the numerically stable version):

    m, s = MADE(z, context),     sigma = sigmoid(g(s + forget_bias))
    z' = sigma * z + (1 - sigma) * m,     log|det dz'/dz| = sum_i log sigma_i

with a soft floor on the gate logit, g(a) = F + softplus(a - F),
F = `gate_floor` (-3: g(a) = a within 0.007 for a >= 2), so
sigma > sigmoid(F) = 0.047. Without it a weight can drive sigma to 1e-12, where
z' = m + sigma * (z - m) rounds z away and the inverse is lost even in float64;
the floor also keeps the sequential inverse well conditioned (its errors grow
like (|dm/dz| / sigma)^d).

Forward (sampling, the posterior direction) is one MADE pass. The inverse,
z_i = m_i + (z'_i - m_i) * (1 + exp(-g_i)), is sequential over the dimensions:
d passes of the MADE.

MAF (Papamakarios et al. 2017, "Masked Autoregressive Flow for Density
Estimation"), used as a posterior flow, so its forward is the sampling
direction:

    z'_i = z_i * exp(alpha_i) + mu_i,
    (mu, alpha) = MADE(z'_{pi < pi(i)}, context)
    log|det dz'/dz| = sum_i alpha_i

Forward: d sequential MADE passes; inverse (the density direction) is one pass,
z = (z' - mu) * exp(-alpha). The log-scale is bounded,
alpha = B * tanh(a / B) with B = `max_log_scale`, so that no weight can make
the scales overflow.

The sequential directions run a loop over the d dimensions (never over the
examples): pass k sets the dimension at position k of the order, whose
parameters depend only on the k - 1 dimensions already set. Dimensions not yet
set keep a finite placeholder value (zero), so no overflow reaches the masked
products.

Shapes: z, z' [..., d]; context [..., C]; log-dets [...]. The leading axes of z
and of the context broadcast against each other (`base.Flow`); the MADE takes
both as they are and adds each context term, computed once on the context's
own leading shape, to the hidden units (`conditioners.ConditionerMLP`): with z
[S, B, d] and context [B, C] the context goes through the network B times, in
each of the d sequential passes too. Both flows start near the identity
(zero-initialized MADE output layer): MAF is the identity, IAF is
z' = sigmoid(forget_bias) * z.

All maths is `keras.ops`: the flows run on every Keras backend, and the
sequential passes are a Python loop over the static d, so they trace (under
`tf.function` or `jax.jit`) to d MADE passes with no data-dependent shape.
"""

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops
import numpy as np

from vib_flows.flows import base
from vib_flows.flows import conditioners
from vib_flows.flows import functional
from vib_flows.flows import registry


def input_degrees(dim: int, reverse: bool = False) -> np.ndarray:
  """Degrees (positions in the order, 1..dim) of the inputs: [dim] int array."""
  degrees = np.arange(1, dim + 1)
  return degrees[::-1].copy() if reverse else degrees


@keras.saving.register_keras_serializable(package="vib_flows")
class MADE(keras.layers.Layer):
  """Masked autoregressive conditioner: `params = made(z, context=None)`.

  Maps z [..., d] (and context [..., C], leading axes broadcast) to params
  [..., d, P] where params[..., i, :] depends only on the z_j with
  degree(j) < degree(i) (and on the context); see the module docstring. Masks
  are numpy constants, not weights. The network is a
  `conditioners.ConditionerMLP` given these masks; its output layer is
  zero-initialized, so all params start at 0.

  Args:
    dim: event size d.
    num_params: P, the number of parameters per dimension.
    hidden_units: width of every hidden layer.
    num_hidden_layers: number of masked hidden layers (>= 1).
    reverse: use the order d..1 instead of 1..d.
    context_dim: C; with it, the context feeds every hidden unit (unmasked).
    **kwargs: passed to `keras.layers.Layer`.
  """

  def __init__(self, dim: int, num_params: int = 2, hidden_units: int = 64,
               num_hidden_layers: int = 2, reverse: bool = False,
               context_dim: int | None = None, **kwargs: Any):
    super().__init__(**kwargs)
    self.dim = int(dim)
    self.num_params = int(num_params)
    self.hidden_units = int(hidden_units)
    self.num_hidden_layers = int(num_hidden_layers)
    self.reverse = bool(reverse)
    self.context_dim = None if context_dim is None else int(context_dim)
    if self.num_hidden_layers < 1 or self.hidden_units < 1:
      raise ValueError("MADE needs at least one hidden layer and one unit.")
    self.degrees = input_degrees(self.dim, self.reverse)
    # Hidden degrees spread evenly over 0..d-1 (0: sees the context only).
    hidden = (np.arange(self.hidden_units) * self.dim) // self.hidden_units
    below = [self.degrees] + [hidden] * (self.num_hidden_layers - 1)
    self.masks = [(b[:, None] <= hidden[None, :]).astype(np.float32)
                  for b in below]
    self.output_mask = np.repeat(
        (hidden[:, None] < self.degrees[None, :]).astype(np.float32),
        self.num_params, axis=1)  # column i * P + p: parameter p of dim i.
    self.net = conditioners.ConditionerMLP(
        self.dim, self.dim, self.num_params, self.hidden_units,
        self.num_hidden_layers, context_dim=self.context_dim, masks=self.masks,
        output_mask=self.output_mask, dtype=self.dtype_policy, name="mlp")

  def build(self, input_shape: Sequence[int | None] | None = None) -> None:
    del input_shape
    self.net.build((None, self.dim))

  def call(self, z: Any, context: Any = None) -> Any:
    """Returns params [..., d, P]; params[..., i, :] depends on z_{<i} only.

    z_{<i}: the coordinates before i in the order.
    """
    if self.context_dim and context is None:
      raise ValueError(
          "This MADE was built with context_dim and needs a context.")
    return self.net(z, context=context)

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(dim=self.dim, num_params=self.num_params,
                  hidden_units=self.hidden_units,
                  num_hidden_layers=self.num_hidden_layers,
                  reverse=self.reverse, context_dim=self.context_dim)
    return config


class _AutoregressiveFlow(base.Flow):
  """Shared parts of IAF and MAF: the MADE conditioner and the sequential loop.

  The order is 1..d; `flows.make_stack` puts a `Reverse` between layers.

  Args:
    hidden_units: width of the MADE's two hidden layers.
    **kwargs: `base.Flow` arguments (dim, context_dim, amortized, name, dtype).
  """

  invertible = True
  needs_permutation = True

  def __init__(self, hidden_units: int = 64, **kwargs: Any):
    self.hidden_units = int(hidden_units)
    super().__init__(**kwargs)

  def build_flow(self, dim: int) -> None:
    self.made = MADE(
        dim, num_params=2, hidden_units=self.hidden_units,
        context_dim=self.context_dim if self.amortized else None,
        dtype=self.sublayer_dtype, name="made")
    self.made.build((None, dim))

  def conditioner(self, z: Any, context: Any) -> tuple[Any, Any]:
    """Returns the two MADE outputs per dimension, each [..., d]."""
    params = self.made(z, context=context)
    return params[..., 0], params[..., 1]

  def sequential(self, step: Callable[[Any], tuple[Any, Any]],
                 target: Any) -> tuple[Any, Any]:
    """Solves x = step(x) autoregressively: d passes, one dimension each.

    `step(x)` returns (new_x, extra) where new_x_i is right once the x_j before
    i in the order are. Returns (x, extra of the last pass, exact for every i).
    """
    x = ops.zeros_like(target)
    extra = None
    for position in range(1, self.event_size + 1):
      new_x, extra = step(x)
      x = ops.where(self.made.degrees == position, new_x, x)
    return x, extra

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(hidden_units=self.hidden_units)
    return config


@registry.register("iaf")
class IAF(_AutoregressiveFlow):
  """Inverse autoregressive flow (Kingma et al. 2016), gated (LSTM-like) update.

  z' = sigma * z + (1 - sigma) * m, sigma = sigmoid(g(s + forget_bias)),
  (m, s) = MADE(z, context), g a soft floor at `gate_floor`; log-det
  sum_i log sigma_i. Forward: one MADE pass; inverse: d passes. See the module
  docstring.

  Args:
    hidden_units: MADE width.
    forget_bias: added to s so that sigma starts near 1 (Kingma et al. use 1-2).
    **kwargs: `base.Flow` arguments.
  """

  gate_floor = -3.0

  def __init__(self, hidden_units: int = 64, forget_bias: float = 2.0,
               **kwargs: Any):
    self.forget_bias = float(forget_bias)
    super().__init__(hidden_units=hidden_units, **kwargs)

  def gate(self, x: Any, context: Any) -> tuple[Any, Any]:
    """Returns (m, gate logit g(s + forget_bias)), each [..., d]."""
    m, s = self.conditioner(x, context)
    floor = ops.cast(self.gate_floor, s.dtype)
    forget_bias = ops.cast(self.forget_bias, s.dtype)
    return m, floor + ops.softplus(s + forget_bias - floor)

  def log_det(self, gate: Any) -> Any:
    return self.sum_log_det(ops.log_sigmoid(gate))

  def forward_and_log_det(self, z: Any, context: Any) -> tuple[Any, Any]:
    m, gate = self.gate(z, context)
    y = m + ops.sigmoid(gate) * (z - m)
    return y, self.log_det(gate)

  def inverse_and_log_det(self, y: Any, context: Any) -> tuple[Any, Any]:
    def step(x):
      m, gate = self.gate(x, context)
      return m + (y - m) * (1.0 + ops.exp(-gate)), gate  # 1/sigma = 1 + e^-g.

    x, gate = self.sequential(step, y)
    return x, -self.log_det(gate)

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(forget_bias=self.forget_bias)
    return config


@registry.register("maf")
class MAF(_AutoregressiveFlow):
  """Masked autoregressive flow (Papamakarios et al. 2017), sampling forward.

  z'_i = z_i * exp(alpha_i) + mu_i with (mu, alpha) = MADE(z'_{<i}, context) and
  alpha = max_log_scale * tanh(raw / max_log_scale); log-det sum_i alpha_i.
  Forward: d MADE passes; inverse: one pass. See the module docstring.

  Args:
    hidden_units: MADE width.
    **kwargs: `base.Flow` arguments.
  """

  max_log_scale = 3.0

  def shift_and_log_scale(self, y: Any, context: Any) -> tuple[Any, Any]:
    mu, raw = self.conditioner(y, context)
    return mu, functional.bounded_log_scale(raw, self.max_log_scale)

  def forward_and_log_det(self, z: Any, context: Any) -> tuple[Any, Any]:
    def step(y):
      mu, alpha = self.shift_and_log_scale(y, context)
      return z * ops.exp(alpha) + mu, alpha

    y, alpha = self.sequential(step, z)
    return y, self.sum_log_det(alpha)

  def inverse_and_log_det(self, y: Any, context: Any) -> tuple[Any, Any]:
    mu, alpha = self.shift_and_log_scale(y, context)
    return (y - mu) * ops.exp(-alpha), -self.sum_log_det(alpha)
