"""A flow layer seen as a TensorFlow Probability bijector (TensorFlow only).

`layer.as_bijector(context=None)` (`Flow` or `FlowStack`) returns a
`FlowBijector`: a `tfp.bijectors.Bijector` of event rank 1 that calls the
layer, so that it shares the layer's weights, and composes with the rest of
TFP (`tfd.TransformedDistribution`, `tfb.Chain`, `tfb.Invert`):

    base = tfd.MultivariateNormalDiag(tf.zeros(d))
    dist = tfd.TransformedDistribution(base, stack.as_bijector())
    dist.log_prob(x)             # log p(x) = log p0(f^-1(x)) - log|det J_f|
    dist.trainable_variables     # the layer's weights (tf.Variables)

Shapes: points `[*sample, *batch, d]`; the forward log-det-Jacobian of
`event_ndims=1` has shape `[*sample, *batch]` (TFP sums it over further axes
for larger event_ndims). A `context [*Lc, C]` broadcasts against the points'
leading axes as in a layer call (an amortized flow: one context per example,
S samples of each with points `[S, B, d]` and context `[B, C]`).

Variables: `tf.Module` finds variables by walking attributes, and Keras 3
keeps a layer's `tf.Variable`s inside its own variable objects. The bijector
therefore holds the layer's underlying `tf.Variable`s in an attribute, taken
at construction (building the flow when its event size is known) and again
after every call, so that a flow built lazily by its first call shows its
weights from then on.

Flows without an analytic inverse (planar, radial, Sylvester) still give
`log_prob` of their own samples through TFP's bijector cache (computed with
the weights the samples were drawn with); `inverse` of other points raises
NotImplementedError naming the flow. Invertible flows bypass that cache, so
that a log-prob is never stale after a training step.

This module imports TensorFlow Probability and is imported only by
`as_bijector` under the TensorFlow backend.
"""

from typing import Any

import keras
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import cache_util


class _FlowCache(cache_util.BijectorCache):
  """TFP's bijector cache for flows without an inverse, none for the others.

  TFP caches a bijector's output and log-det by the identity of the input
  tensor, for as long as that tensor lives. A flow's weights change during
  training, so a cached log-det of the same data tensor (`log_prob(x_train)`
  evaluated before and after a training step, eagerly) would be stale; an
  invertible flow needs no cache and computes every call. A flow without an
  inverse needs the cache for `log_prob` of its own samples: those use the
  weights the samples were drawn with.
  """

  def _uncached(self) -> bool:
    return (self.bijector is not None
            and bool(getattr(self.bijector.flow, "invertible", False)))

  def _lookup(self, input, forward_name, inverse_name,  # noqa: A002
              **kwargs):
    if self._uncached():
      return self._invoke(input, forward_name, kwargs, {})
    return super()._lookup(input, forward_name, inverse_name, **kwargs)

  def _attributes(self, input, fn_name, **kwargs):  # noqa: A002
    if self._uncached():
      return {}
    return super()._attributes(input, fn_name, **kwargs)


def _tf_variables(layer: keras.layers.Layer) -> list[tf.Variable]:
  """The `tf.Variable`s behind a Keras layer's trainable weights."""
  variables = []
  for weight in layer.trainable_weights:
    value = getattr(weight, "value", weight)
    if isinstance(value, tf.Variable):
      variables.append(value)
  return variables


class FlowBijector(tfp.bijectors.Bijector):
  """A `Flow` layer (or `FlowStack`) seen as a TFP bijector of event rank 1.

  forward(x) = layer(x, context)[0];
  forward_log_det_jacobian(x, event_ndims=1) = layer(x, context)[1];
  inverse(y) = layer.inverse(y, context)[0] (invertible flows).

  Args:
    flow: a `vib_flows.flows.Flow` or `FlowStack` (any Keras layer with the
      flow call convention).
    context: the amortized flow's context `[*Lc, C]`, broadcast against the
      points' leading axes; None for global flows.
    name: the bijector's name (default: the layer's).
  """

  _cache = _FlowCache()

  def __init__(self, flow: keras.layers.Layer, context: Any = None,
               name: str | None = None):
    parameters = dict(locals())
    self._flow = flow
    self._context = (None if context is None
                     else tf.convert_to_tensor(context))
    self._build_flow()
    # Tracked by tf.Module: `trainable_variables` of this bijector and of
    # every distribution or bijector holding it.
    self._flow_variables = _tf_variables(flow)
    super().__init__(
        forward_min_event_ndims=1,
        is_constant_jacobian=False,
        validate_args=False,
        parameters=parameters,
        name=name or flow.name,
    )

  @property
  def flow(self) -> keras.layers.Layer:
    """The layer (shares its weights with the bijector)."""
    return self._flow

  @property
  def context(self) -> tf.Tensor | None:
    """The context given to every call of the layer, or None."""
    return self._context

  def _build_flow(self) -> None:
    """Builds the layer now when its event size is known."""
    if self._flow.built:
      return
    dims = [getattr(layer, "dim", None)
            for layer in getattr(self._flow, "flows", [self._flow])]
    dims = [d for d in dims if d is not None]
    if not dims:
      return  # Built by the first call; `_sync_variables` then sees it.
    context_shape = None if self._context is None else tuple(
        self._context.shape)
    self._flow.build((None, dims[0]), context_shape)

  def _sync_variables(self) -> None:
    """Takes the layer's variables again (a lazy layer's first call)."""
    if len(self._flow_variables) != len(self._flow.trainable_weights):
      self._flow_variables = _tf_variables(self._flow)

  def _apply(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    y, log_det = self._flow(x, context=self._context)
    self._sync_variables()
    return y, log_det

  def _apply_inverse(self, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    x, log_det = self._flow.inverse(y, context=self._context)
    self._sync_variables()
    return x, log_det

  def _forward(self, x: tf.Tensor) -> tf.Tensor:
    return self._apply(x)[0]

  def _forward_log_det_jacobian(self, x: tf.Tensor) -> tf.Tensor:
    return self._apply(x)[1]

  def _inverse(self, y: tf.Tensor) -> tf.Tensor:
    return self._apply_inverse(y)[0]

  def _inverse_log_det_jacobian(self, y: tf.Tensor) -> tf.Tensor:
    return self._apply_inverse(y)[1]
