"""Reverse: the permutation flow placed between autoregressive/coupling layers.

    z'_i = z_{d + 1 - i},     log|det dz'/dz| = 0,     inverse: itself.

An autoregressive or coupling layer conditions on the coordinates in one fixed
order; stacked alone, the first coordinate would never depend on the others.
A Reverse between two such layers makes the next one condition the other way
round (Kingma et al. 2016, Sec. 4; Dinh et al. 2017, Sec. 3.5; van den Berg
et al. 2018 permute T-SNF the same way). `flows.make_stack` inserts it.
"""

from typing import Any

import keras
from keras import ops

from vib_flows.flows import base


@keras.saving.register_keras_serializable(package="vib_flows")
class Reverse(base.Flow):
  """Reverses the order of the coordinates: z [..., d] -> z[..., ::-1].

  No weights; log-det 0 [...]; exact inverse (itself); global (ignores the
  context). Not a `config.flow.name`: `flows.make_stack` places it between
  the layers of flows that set `needs_permutation`.
  """

  invertible = True
  flow_name = "reverse"

  def forward_and_log_det(self, z: Any, context: Any) -> tuple[Any, Any]:
    del context
    return ops.flip(z, axis=-1), ops.zeros_like(z[..., 0])

  def inverse_and_log_det(self, y: Any, context: Any) -> tuple[Any, Any]:
    return self.forward_and_log_det(y, context)
