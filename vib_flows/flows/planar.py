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
"""

import keras
import tensorflow as tf

from vib_flows.flows import base
from vib_flows.flows import registry


@registry.register("planar")
class PlanarFlow(base.Flow):
  """Planar flow (Rezende & Mohamed 2015), see the module docstring.

  f(z) = z + u_hat tanh(w^T z + b) [batch, d];
  log|det df/dz| = log(h^2 + (1 - h^2) softplus(w^T u)), h = tanh(w^T z + b).

  Parameters (global, or amortized from the context): u [d], w [d], b [1].
  """

  def build_flow(self, dim):
    init = keras.initializers.RandomNormal(stddev=0.1)
    self.add_flow_parameter("u", (dim,), init)
    self.add_flow_parameter("w", (dim,), init)
    self.add_flow_parameter("b", (1,), "zeros")

  def constrained_parameters(self, context=None):
    """Returns (u_hat, w, b, w^T u).

    Shapes [B|1, d], [B|1, d], [B|1, 1], [B|1, 1].

    w^T u_hat = -1 + softplus(w^T u) > -1.
    """
    p = self.flow_parameters(context)
    u, w, b = p["u"], p["w"], p["b"]
    wu = tf.reduce_sum(w * u, axis=-1, keepdims=True)
    m_wu = -1.0 + tf.math.softplus(wu)
    w_norm_sq = tf.reduce_sum(tf.square(w), axis=-1, keepdims=True)
    u_hat = u + (m_wu - wu) * w / w_norm_sq
    return u_hat, w, b, wu

  def forward_and_log_det(self, z, context):
    u_hat, w, b, wu = self.constrained_parameters(context)
    a = tf.reduce_sum(w * z, axis=-1, keepdims=True) + b  # [batch, 1]
    h = tf.tanh(a)
    y = z + u_hat * h
    h_sq = tf.square(h)
    det = h_sq + (1.0 - h_sq) * tf.math.softplus(wu)  # No cancellation.
    return y, self.sum_log_det(tf.math.log(det))
