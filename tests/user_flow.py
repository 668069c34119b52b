"""A flow defined outside vib_flows, registered by importing this module.

`--config.flow.module=tests.user_flow --config.flow.name=user_scale` trains it
from the command line (tests/flows/test_registry.py). Written with `keras.ops`
on z [..., d], as a user's flow would be: it runs on every Keras backend and
with any leading batch shape.
"""

import keras
from keras import ops

from vib_flows import flows


@flows.register("user_scale", package="vib_flows_tests")
class UserScale(flows.Flow):
  """Elementwise scaling z' = exp(s) * z; log|det dz'/dz| = sum_i s_i.

  Args:
    init_log_scale: initial value of every s_i.
    **kwargs: `Flow` arguments (dim, context_dim, amortized, name, dtype).
  """

  invertible = True

  def __init__(self, init_log_scale: float = 0.0, **kwargs):
    self.init_log_scale = float(init_log_scale)
    super().__init__(**kwargs)

  def build_flow(self, dim):
    self.add_flow_parameter(
        "log_scale", (dim,), keras.initializers.Constant(self.init_log_scale))

  def forward_and_log_det(self, z, context):
    # s: [d] (global) or [*Lc, d] (amortized), broadcast to z's [*L, d].
    s = self.flow_parameters(context)["log_scale"] + ops.zeros_like(z)
    return z * ops.exp(s), self.sum_log_det(s)

  def inverse_and_log_det(self, y, context):
    s = self.flow_parameters(context)["log_scale"] + ops.zeros_like(y)
    return y * ops.exp(-s), -self.sum_log_det(s)

  def get_config(self):
    config = super().get_config()
    config.update(init_log_scale=self.init_log_scale)
    return config
