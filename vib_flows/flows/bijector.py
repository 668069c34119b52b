"""A flow layer seen as a TensorFlow Probability bijector (TensorFlow only).

Placeholder moved from base.py so that `Flow.as_bijector` keeps working; the
complete bijector is written in this module by its owner. Imported only by
`Flow.as_bijector` / `FlowStack.as_bijector`, never by `vib_flows.flows`.
"""

from typing import Any

import keras
import tensorflow as tf
import tensorflow_probability as tfp


class FlowBijector(tfp.bijectors.Bijector):
  """A `Flow` layer (or `FlowStack`) seen as a TFP bijector of event rank 1."""

  def __init__(self, flow: keras.layers.Layer, context: Any = None,
               name: str | None = None):
    parameters = dict(locals())
    self._flow = flow
    self._context = context
    super().__init__(
        forward_min_event_ndims=1,
        is_constant_jacobian=False,
        validate_args=False,
        parameters=parameters,
        name=name or flow.name,
    )

  def _forward(self, x: tf.Tensor) -> tf.Tensor:
    return self._flow(x, context=self._context)[0]

  def _forward_log_det_jacobian(self, x: tf.Tensor) -> tf.Tensor:
    return self._flow(x, context=self._context)[1]

  def _inverse(self, y: tf.Tensor) -> tf.Tensor:
    return self._flow.inverse(y, context=self._context)[0]

  def _inverse_log_det_jacobian(self, y: tf.Tensor) -> tf.Tensor:
    return self._flow.inverse(y, context=self._context)[1]
