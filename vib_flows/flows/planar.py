"""Planar flow (Rezende & Mohamed 2015, "Variational Inference with Normalizing Flows").

    f(z) = z + u_hat * h(w^T z + b),                     h = tanh
    log|det df/dz| = log|1 + u_hat^T psi(z)|,            psi(z) = h'(w^T z + b) w

Invertibility needs w^T u_hat >= -1 (Appendix A.1 of the paper). The raw
parameter u is mapped to

    u_hat = u + (m(w^T u) - w^T u) * w / ||w||^2,        m(a) = -1 + softplus(a),

so that w^T u_hat = m(w^T u) > -1 for every raw (u, w). The division is by
||w||^2, not ||w||. Planar flows have no closed-form inverse.
"""

import keras
import tensorflow as tf

from vib_flows.flows import base
from vib_flows.flows import registry


@registry.register("planar")
class PlanarFlow(base.Flow):
  """Planar flow `z + u_hat * tanh(w.z + b)`; see the module docstring.

  Parameters (global, or amortized from the context): u [d], w [d], b [1].
  """

  def build_flow(self, dim):
    init = keras.initializers.RandomNormal(stddev=0.1)
    self.add_flow_parameter("u", (dim,), init)
    self.add_flow_parameter("w", (dim,), init)
    self.add_flow_parameter("b", (1,), "zeros")

  def constrained_parameters(self, context=None):
    """Returns (u_hat, w, b) with w^T u_hat > -1; shapes [B|1, d], [B|1, d], [B|1, 1]."""
    p = self.flow_parameters(context)
    u, w, b = p["u"], p["w"], p["b"]
    wu = tf.reduce_sum(w * u, axis=-1, keepdims=True)
    m_wu = -1.0 + tf.math.softplus(wu)
    w_norm_sq = tf.reduce_sum(tf.square(w), axis=-1, keepdims=True)
    u_hat = u + (m_wu - wu) * w / w_norm_sq
    return u_hat, w, b

  def forward_and_log_det(self, z, context):
    u_hat, w, b = self.constrained_parameters(context)
    a = tf.reduce_sum(w * z, axis=-1, keepdims=True) + b  # [batch, 1]
    h = tf.tanh(a)
    y = z + u_hat * h
    h_prime = 1.0 - tf.square(h)
    det = 1.0 + h_prime * tf.reduce_sum(u_hat * w, axis=-1, keepdims=True)
    # det >= 1 - h' >= 0 by the constraint; abs guards the rounding near 0.
    log_det = self.sum_log_det(tf.math.log(tf.abs(det)))
    return y, log_det
