"""FlowStack: a composition z_K = f_K o ... o f_1(z_0) with the summed log-dets.

    log q_K(z_K) = log q_0(z_0) - sum_k log|det df_k/dz_{k-1}|

`make_stack` builds the stack a config names, with `permutation.Reverse`
between the layers of flows that condition on a fixed coordinate order.
"""

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from vib_flows.flows import base
from vib_flows.flows import permutation
from vib_flows.flows import registry


def make_stack(name: str, num_flows: int, **kwargs: Any) -> "FlowStack":
  """Returns a FlowStack of `num_flows` new `name` flows built with `kwargs`.

  For flows whose class sets `needs_permutation` (autoregressive, coupling,
  triangular Sylvester), a `Reverse` follows every layer but the last, and the
  last too when `num_flows` is even, so that consecutive layers condition on
  opposite orders and z_K comes out in the order of z_0. Layer k then computes
  R f R for odd k, a layer conditioning on the reversed order (R = Reverse).
  Flows whose class names a `maps_argument` (planar) become one layer of
  `num_flows` maps, the same function with fewer, larger weights.

  Raises:
    ValueError: num_flows < 0, unknown name or option (see `registry.get`;
      the maps argument is not an option: it is `num_flows`).
  """
  if int(num_flows) < 0:
    raise ValueError(f"num_flows must be >= 0, got {num_flows}.")
  flow_class = registry.get_class(name)
  maps_argument = flow_class.maps_argument
  if maps_argument is not None:
    registry.check_options(name, kwargs)
    if int(num_flows) == 0:
      return FlowStack([], dtype=kwargs.get("dtype"))
    return FlowStack([registry.get(name, **{maps_argument: int(num_flows)},
                                   **kwargs)], dtype=kwargs.get("dtype"))
  permute = flow_class.needs_permutation
  layers = []
  for k in range(int(num_flows)):
    layers.append(registry.get(name, **kwargs))
    if permute and (k < int(num_flows) - 1 or k % 2 == 1):
      layers.append(permutation.Reverse(dim=kwargs.get("dim"),
                                        dtype=kwargs.get("dtype")))
  # The stack casts its inputs to its own compute dtype: the layers' dtype.
  return FlowStack(layers, dtype=kwargs.get("dtype"))


@keras.saving.register_keras_serializable(package="vib_flows")
class FlowStack(keras.layers.Layer):
  """Applies flow layers in order and sums their log-dets.

  `z_out, log_det = stack(z, context=None)` with z [..., d], context [..., C]
  and the shape rules of `Flow`: z_out [*L, d], log_det [*L], L the
  broadcast of the leading shapes of z and of the context. Every layer gets
  the same `context` (global flows ignore it; a stack of global flows only
  gives z's own leading shape). An empty stack is the identity with
  log_det = 0, broadcast to L when given a context.

  Args:
    layers: list of flow layers (`vib_flows.flows.get(...)`, `Flow`s or
      `FlowStack`s).
    **kwargs: passed to `keras.layers.Layer`.
  """

  built: bool  # Keras's flag, declared: the type checker sees no Keras types.

  def __init__(self, layers: Sequence["base.Flow | FlowStack"] = (),
               **kwargs: Any):
    super().__init__(**kwargs)
    self.flows = list(layers)
    for layer in self.flows:
      if not isinstance(layer, (base.Flow, FlowStack)):
        raise TypeError(
            f"FlowStack takes flow layers, got {type(layer).__name__}."
        )

  def __len__(self) -> int:
    """The number of layers, Reverse layers included."""
    return len(self.flows)

  @property
  def invertible(self) -> bool:
    return all(layer.invertible for layer in self.flows)

  @property
  def amortized(self) -> bool:
    return any(layer.amortized for layer in self.flows)

  def build(self, z_shape: Sequence[int | None],
            context_shape: Sequence[int | None] | None = None) -> None:
    for layer in self.flows:
      if not layer.built:
        layer.build(z_shape, context_shape if layer.amortized else None)
    self.built = True

  def call(self, z: Any, context: Any = None) -> tuple[Any, Any]:
    """Returns (z_K [*L, d], sum_k log|det J_k| [*L])."""
    z = self._broadcast_if_empty(z, context)
    log_dets = []
    for layer in self.flows:
      z, layer_log_det = layer(z, context=context)
      log_dets.append(layer_log_det)
    return z, self._sum(log_dets, z)

  def _broadcast_if_empty(self, z: Any, context: Any) -> Any:
    """Broadcasts z [*Lz, d] to [*L, d] (an empty stack given a context)."""
    if self.flows:
      return z
    z = ops.convert_to_tensor(z)
    if context is None:
      return z
    context = ops.convert_to_tensor(context)
    leading = base.broadcast_leading_shapes(
        tuple(z.shape), tuple(context.shape), self.flow_name)
    return base.broadcast_to_leading(z, context, leading)

  def _sum(self, log_dets: Sequence[Any], z: Any) -> Any:
    """Sums per-layer log-dets [...] (broadcast) in their dtype.

    That is float32 for 16-bit compute dtypes; zeros [...] of z's leading
    shape for an empty stack.
    """
    if not log_dets:
      dtype = z.dtype
      if keras.backend.standardize_dtype(dtype) in ("float16", "bfloat16"):
        dtype = "float32"
      return ops.zeros_like(z[..., 0], dtype=dtype)
    dtype = log_dets[0].dtype
    total = log_dets[0]
    for log_det in log_dets[1:]:
      total = total + ops.cast(log_det, dtype)
    return total

  def inverse(self, y: Any, context: Any = None) -> tuple[Any, Any]:
    """Inverts every layer in reverse order.

    Returns (z_0 [*L, d], sum of inverse log-dets [*L]).

    Raises:
      NotImplementedError: a layer has no analytic inverse (names it).
    """
    for layer in self.flows:
      if not layer.invertible:
        raise NotImplementedError(
            f"FlowStack has no inverse: the {layer.flow_name} flow "
            f"({layer.name}) has no analytic inverse."
        )
    y = self._broadcast_if_empty(y, context)
    log_dets = []
    for layer in reversed(self.flows):
      y, layer_log_det = layer.inverse(y, context=context)
      log_dets.append(layer_log_det)
    return y, self._sum(log_dets, y)

  flow_name = "flow_stack"

  def as_bijector(self, context: Any = None) -> Any:
    """The whole stack as one `tfp.bijectors.Bijector` (TensorFlow only).

    See `Flow.as_bijector`.
    """
    return base.make_bijector(self, context)

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config["layers"] = [
        keras.saving.serialize_keras_object(layer) for layer in self.flows
    ]
    return config

  @classmethod
  def from_config(cls, config: dict[str, Any]) -> "FlowStack":
    config = dict(config)
    config["layers"] = [
        keras.saving.deserialize_keras_object(layer)
        for layer in config["layers"]
    ]
    return cls(**config)
