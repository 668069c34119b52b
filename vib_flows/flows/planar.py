"""Planar flow.

Rezende & Mohamed 2015, "Variational Inference with Normalizing Flows".

    f(z) = z + u_hat * h(w^T z + b),            h = tanh
    log|det df/dz| = log|1 + u_hat^T psi(z)|,   psi(z) = h'(w^T z + b) w

Invertibility needs w^T u_hat >= -1 (Appendix A.1 of the paper). The raw
parameter u is mapped to

    u_hat = u + (m(w^T u) - w^T u) * w / ||w||^2,
    m(a) = -1 + softplus(a),

so that w^T u_hat = m(w^T u) > -1 for every raw (u, w). The division is by
||w||^2, not ||w||. With h' = 1 - h^2 the determinant is then

    1 + h' w^T u_hat = h^2 + (1 - h^2) softplus(w^T u),

a sum of two terms >= 0, so it is computed with no cancellation even where
w^T u_hat -> -1 (written as 1 + h' w^T u_hat, it rounds to 0 in float16 at
w^T u = -8 and is off by 0.45 nats at w^T u = -6). Planar flows have no
closed-form inverse.

One layer holds K >= 1 maps (`num_maps`), f_K o ... o f_1, with the
parameters of all K in three weights u, w [K, d], b [K, 1], and

    log|det J| = sum_k log(h_k^2 + (1 - h_k^2) softplus(w_k^T u_k)).

`flows.make_stack("planar", K)` (config `flow.num_flows = K`) builds one such
layer: the same maths as K one-map layers, but the constraint on u_hat is
computed for all K at once and the optimizer, the NaN check and the
checkpoints handle 3 weights instead of 3K. With XLA every weight costs a
fixed time per step, which for maps this small is most of their cost
(docs/performance.md).
"""

from typing import Any

import keras
from keras import ops

from vib_flows.flows import base
from vib_flows.flows import functional
from vib_flows.flows import registry


@registry.register("planar")
class PlanarFlow(base.Flow):
  """Planar flow (Rezende & Mohamed 2015), see the module docstring.

  Map k: f_k(z) = z + u_hat_k tanh(w_k^T z + b_k) [..., d], with
  log|det df_k/dz| = log(h^2 + (1 - h^2) softplus(w_k^T u_k)),
  h = tanh(w_k^T z + b_k). The layer applies maps 1..K in order.

  Parameters (global, or amortized from the context): u [K, d], w [K, d],
  b [K, 1].

  Args:
    num_maps: K >= 1, the planar maps this layer composes.
    **kwargs: `base.Flow` arguments (dim, context_dim, amortized, ...).
  """

  maps_argument = "num_maps"

  def __init__(self, num_maps: int = 1, **kwargs: Any):
    if int(num_maps) < 1:
      raise ValueError(f"planar: num_maps must be >= 1, got {num_maps}.")
    self.num_maps = int(num_maps)
    super().__init__(**kwargs)

  def build_flow(self, dim: int) -> None:
    init = keras.initializers.RandomNormal(stddev=0.1)
    self.add_flow_parameter("u", (self.num_maps, dim), init)
    self.add_flow_parameter("w", (self.num_maps, dim), init)
    self.add_flow_parameter("b", (self.num_maps, 1), "zeros")

  def constrained_parameters(self, context: Any = None) -> tuple[Any, ...]:
    """Returns (u_hat, w, b, w^T u) of all K maps at once.

    Shapes [*Lc, K, d], [*Lc, K, d], [*Lc, K, 1], [*Lc, K, 1] for an amortized
    flow given context [*Lc, C], without the leading *Lc for a global one;
    w_k^T u_hat_k = -1 + softplus(w_k^T u_k) > -1.
    """
    p = self.flow_parameters(context)
    u, w, b = p["u"], p["w"], p["b"]
    wu = ops.sum(w * u, axis=-1, keepdims=True)
    m_wu = -1.0 + ops.softplus(wu)
    w_norm_sq = ops.sum(ops.square(w), axis=-1, keepdims=True)
    u_hat = u + (m_wu - wu) * w / w_norm_sq
    return u_hat, w, b, wu

  def forward_and_log_det(self, z: Any, context: Any) -> tuple[Any, Any]:
    u_hat, w, b, wu = self.constrained_parameters(context)
    softplus_wu = ops.softplus(wu)
    dets = []
    for k in range(self.num_maps):  # Sequential: map k acts on map k-1's z.
      # z [*L, d]; the parameters of map k [*Lc, d] or [d] broadcast.
      a = ops.sum(w[..., k, :] * z, axis=-1, keepdims=True) + b[..., k, :]
      h = functional.tanh(a)  # [*L, 1]
      z = z + u_hat[..., k, :] * h
      h_sq = ops.square(h)
      # No cancellation: both terms are >= 0.
      dets.append(h_sq + (1.0 - h_sq) * softplus_wu[..., k, :])
    return z, self.sum_log_det(ops.log(ops.concatenate(dets, axis=-1)))

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config["num_maps"] = self.num_maps
    return config
