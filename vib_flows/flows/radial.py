"""Radial flow.

Rezende & Mohamed 2015, "Variational Inference with Normalizing Flows".

Contracts or expands the space around a reference point z0:

    f(z) = z + beta * h(alpha, r) * (z - z0),
    h = 1 / (alpha + r),   r = ||z - z0||
    log|det df/dz| = (d - 1) log(1 + beta h) + log(1 + beta h + beta h'(r) r)

Invertibility needs beta >= -alpha (Appendix A.2 of the paper). The raw
parameters are mapped to

    alpha = softplus(alpha_raw) > 0,   beta = -alpha + s,
    s = softplus(beta_raw) >= 0,

so beta >= -alpha for every raw value. The log-det terms are evaluated from
alpha, s and r, which are all >= 0, with no cancellation near the boundary
beta -> -alpha (h' = -h^2):

    1 + beta h             = (r + s) / (alpha + r)
    1 + beta h + beta h' r = (r (r + 2 alpha) + alpha s) / (alpha + r)^2

Radial flows have no closed-form inverse.
"""

from typing import Any

import keras
from keras import ops

from vib_flows.flows import base
from vib_flows.flows import registry


@registry.register("radial")
class RadialFlow(base.Flow):
  """Radial flow (Rezende & Mohamed 2015), see the module docstring.

  f(z) = z + beta (z - z0) / (alpha + r), r = ||z - z0||;
  log|det df/dz| = (d - 1) log(1 + beta h) + log(1 + beta h + beta h' r),
  h = 1 / (alpha + r).

  Parameters (global, or amortized from the context): z0 [d], alpha_raw [1],
  beta_raw [1]. With the default initialization (alpha_raw = beta_raw = 0) the
  flow starts as the identity (beta = 0) around a random reference point z0.
  """

  def build_flow(self, dim: int) -> None:
    self.add_flow_parameter(
        "z0", (dim,), keras.initializers.RandomNormal(stddev=1.0)
    )
    self.add_flow_parameter("alpha", (1,), "zeros")
    self.add_flow_parameter("beta", (1,), "zeros")

  def constrained_parameters(
      self, context: Any = None) -> tuple[Any, Any, Any, Any]:
    """Returns (z0, alpha, beta, s) with alpha > 0, s = alpha + beta >= 0.

    Shapes: z0 [*Lc, d]; alpha, beta, s [*Lc, 1] for an amortized flow given
    context [*Lc, C]; [d] and [1] for a global one.
    """
    p = self.flow_parameters(context)
    alpha = ops.softplus(p["alpha"])
    s = ops.softplus(p["beta"])
    return p["z0"], alpha, s - alpha, s

  def forward_and_log_det(self, z: Any, context: Any) -> tuple[Any, Any]:
    z0, alpha, beta, s = self.constrained_parameters(context)
    diff = z - z0  # [*L, d]
    sq = ops.sum(ops.square(diff), axis=-1, keepdims=True)  # [*L, 1]
    # sqrt with a finite (zero) gradient at z = z0, where f is differentiable.
    positive = sq > 0
    safe_sq = ops.where(positive, sq, ops.ones_like(sq))
    r = ops.where(positive, ops.sqrt(safe_sq), 0.0)
    y = z + beta / (alpha + r) * diff
    log_alpha_r = ops.log(alpha + r)
    log_det = (self.event_size - 1) * (ops.log(r + s) - log_alpha_r) + (
        ops.log(r * (r + 2 * alpha) + alpha * s) - 2 * log_alpha_r
    )
    return y, self.sum_log_det(log_det)
