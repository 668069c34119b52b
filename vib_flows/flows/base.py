"""The base class of every normalizing-flow layer.

A flow layer maps z [..., d] to z' [..., d] and returns the log-determinant of
its Jacobian for each point:

    z_out, log_det = layer(z, context=None)        # log_det: [...]
    log q_k(z_k) = log q_{k-1}(z_{k-1}) - log |det dz_k / dz_{k-1}|

z may have any number of leading (batch) axes, none included: z [d] is one
point and its log_det a scalar.

Global or amortized parameters (van den Berg et al. 2018, "Sylvester
Normalizing Flows", Sec. 4): a global flow owns its parameters; an amortized
flow (built with `context_dim=C` or `amortized=True`) computes them from
`context` [..., C], the encoder's features of each example, so that every
example has its own flow.

Broadcasting: the leading axes of z and of the context broadcast against each
other by NumPy's rules (aligned on the right, axes of size 1 stretch), and
the outputs have the broadcast leading shape L:

    z [*Lz, d], context [*Lc, C]  ->  z_out [*L, d], log_det [*L],
    L = broadcast(Lz, Lc)

Shapes that do not broadcast are refused with a ValueError naming both. The
typical use is z [S, B, d] (S samples of each of B examples) with context
[B, C]: the amortized parameters are computed once per example, from [B, C],
and broadcast over the S samples (the context is never tiled). Global flows
ignore the context.

Subclasses implement `build_flow(dim)` and `forward_and_log_det(z, context)`,
and where an analytic inverse exists set `invertible = True` and implement
`inverse_and_log_det(y, context)`. They get z [..., d] (already broadcast to
the leading shape L) and context [..., C] (not tiled: its own leading shape,
broadcastable against z's), so their maths must be written with `...`
indexing, `einsum` with `...` and broadcasting ops only. Parameters that
amortize are declared with `add_flow_parameter` and read with
`flow_parameters(context)`; flows whose conditioner is a network (IAF, MAF,
coupling) feed `context` to that network. All maths is `keras.ops`, so the
flows run on every Keras backend; `as_bijector` (TFP) needs TensorFlow.

Under a mixed-precision policy (compute dtype float16 or bfloat16) a flow takes
and returns z in the compute dtype but does all of its maths in float32
(`math_dtype`): its parameters, its conditioner network (`sublayer_dtype`) and
every log-det term. A log-det near a singular Jacobian (planar w^T u_hat -> -1,
a spline with large conditioner outputs) loses every digit in float16; the
flows are a small part of a model, so float32 costs little.
"""

from collections.abc import Sequence
import math
from typing import Any

import keras
from keras import ops
import numpy as np

from vib_flows.flows import backend

Shape = tuple[int | None, ...]


def broadcast_leading_shapes(z_shape: Sequence[int | None],
                             context_shape: Sequence[int | None],
                             flow_name: str = "flow") -> Shape:
  """The broadcast of the leading shapes of z [*Lz, d] and context [*Lc, C].

  NumPy's rule on the static shapes: aligned on the right, an axis of size 1
  stretches to the other's size; an unknown size (None) is assumed to fit
  (the backend checks it when the sizes are known).

  Args:
    z_shape: the full shape of z (last axis included).
    context_shape: the full shape of the context (last axis included).
    flow_name: named in the error message.

  Returns:
    L, the broadcast leading shape (None where unknown).

  Raises:
    ValueError: the leading shapes do not broadcast (names both shapes).
  """
  lz, lc = tuple(z_shape)[:-1], tuple(context_shape)[:-1]
  rank = max(len(lz), len(lc))
  lz = (1,) * (rank - len(lz)) + lz
  lc = (1,) * (rank - len(lc)) + lc
  out: list[int | None] = []
  for a, b in zip(lz, lc):
    if a == 1:
      out.append(b)
    elif b == 1 or a == b:
      out.append(a)
    elif a is None or b is None:
      out.append(a if b is None else b)
    else:
      raise ValueError(
          f"{flow_name} flow: the leading axes of z {tuple(z_shape)} and of "
          f"context {tuple(context_shape)} do not broadcast (z [..., d] and "
          "context [..., C] must have leading shapes that broadcast by "
          "NumPy's rules)."
      )
  return tuple(out)


def split_last_axis(x: Any, shape: Sequence[int]) -> Any:
  """Reshapes x [..., prod(shape)] to [..., *shape] (leading axes kept)."""
  shape = tuple(int(s) for s in shape)
  lead = tuple(x.shape[:-1])
  if lead.count(None) == 0:
    return ops.reshape(x, lead + shape)
  if lead.count(None) == 1:
    return ops.reshape(x, tuple(-1 if s is None else s for s in lead) + shape)
  dynamic = ops.shape(x)[:-1]
  return ops.reshape(x, tuple(dynamic) + shape)


class Flow(keras.layers.Layer):
  """Abstract normalizing-flow layer: `z_out, log_det = layer(z, context=None)`.

  Args:
    dim: event size d. Optional: otherwise taken from the first call.
    context_dim: size C of the context features; makes the flow amortized.
    amortized: make the flow amortized, C taken from the first call's context.
    **kwargs: passed to `keras.layers.Layer` (name, dtype, ...).
  """

  invertible = False  # True: `inverse_and_log_det` is implemented.
  # True: the flow conditions on a fixed coordinate order (autoregressive,
  # coupling); `flows.make_stack` puts a `Reverse` between such layers.
  needs_permutation = False
  # Name of a constructor argument through which one layer composes several
  # maps of its kind (planar: "num_maps"); `flows.make_stack` then builds one
  # layer of `num_flows` maps instead of `num_flows` layers.
  maps_argument: str | None = None
  flow_name = "flow"  # Set by `registry.register`.
  built: bool  # Keras's flag, declared: the type checker sees no Keras types.

  def __init__(self, dim: int | None = None, context_dim: int | None = None,
               amortized: bool = False, **kwargs: Any):
    super().__init__(**kwargs)
    if dim is not None and int(dim) < 1:
      raise ValueError(f"{self.flow_name}: dim must be >= 1, got {dim}.")
    if context_dim is not None and int(context_dim) < 1:
      raise ValueError(
          f"{self.flow_name}: context_dim must be >= 1, got {context_dim}."
      )
    self.dim = None if dim is None else int(dim)
    self.context_dim = None if context_dim is None else int(context_dim)
    self.amortized = bool(amortized) or context_dim is not None
    # name -> (shape, global value or amortized bias, amortized kernel|None).
    self._flow_params: dict[str, tuple[tuple[int, ...], Any, Any]] = {}
    # The weights are created in `build`; with every shape known it runs now,
    # so that `flows.get(name, dim=d)` has its weights (as a Keras layer given
    # its input shape would).
    if self.dim is not None and (not self.amortized or self.context_dim):
      self.build(
          (None, self.dim),
          (None, self.context_dim) if self.amortized else None,
      )

  # ----------------------------------------------------------------- building
  def build(self, z_shape: Sequence[int | None],
            context_shape: Sequence[int | None] | None = None) -> None:
    """Checks the shapes and creates the weights (`build_flow`) once.

    Args:
      z_shape: [..., d], any rank >= 1 with a known d.
      context_shape: [..., C] (amortized flows), any rank >= 1.
    """
    if self.built:
      return
    z_shape = tuple(z_shape)
    if len(z_shape) < 1 or z_shape[-1] is None:
      raise ValueError(
          f"{self.flow_name} flow expects z of shape [..., d] with a known "
          f"d; got shape {z_shape}."
      )
    dim = int(z_shape[-1])
    if self.dim is not None and dim != self.dim:
      raise ValueError(
          f"{self.flow_name} flow was built for d={self.dim}, got z of shape "
          f"{z_shape}."
      )
    self.dim = dim
    if self.amortized:
      if context_shape is not None and len(tuple(context_shape)) < 1:
        raise ValueError(
            f"{self.flow_name} flow expects context of shape [..., C], got "
            f"shape {tuple(context_shape)}."
        )
      if context_shape is not None and context_shape[-1] is not None:
        if (self.context_dim is not None
            and context_shape[-1] != self.context_dim):
          raise ValueError(
              f"{self.flow_name} flow has context_dim={self.context_dim}, got "
              f"context of shape {tuple(context_shape)}."
          )
        self.context_dim = int(context_shape[-1])
      if self.context_dim is None:
        raise ValueError(
            f"{self.flow_name} flow is amortized and needs `context` "
            "[..., C] (or context_dim=C) to be built."
        )
    self.build_flow(dim)
    self.built = True

  def build_flow(self, dim: int) -> None:
    """Creates the weights for event size `dim` (subclasses)."""
    del dim

  def add_flow_parameter(self, name: str, shape: Sequence[int],
                         initializer: Any = "zeros",
                         context_initializer: Any = None) -> None:
    """Declares a parameter that is global, or amortized from the context.

    Global: a weight of `shape`. Amortized: `bias + context @ kernel`, reshaped
    to [..., *shape], with `bias` initialized like the global weight and
    `kernel` [C, prod(shape)] initialized small, so an untrained amortized flow
    starts close to the global one.

    Args:
      name: parameter name (key of `flow_parameters`).
      shape: parameter shape, without batch axes.
      initializer: Keras initializer of the global value / amortized bias.
      context_initializer: initializer of the amortized kernel
        (default: normal with stddev 0.01 / sqrt(C)).
    """
    shape = tuple(int(s) for s in shape)
    # autocast=False: read in float32 under mixed precision (see `math_dtype`).
    bias = self.add_weight(name=name, shape=shape, initializer=initializer,
                           autocast=False)
    kernel = None
    if self.amortized:
      context_dim = self.context_dim
      if context_dim is None:
        raise RuntimeError(
            f"{self.flow_name} flow: add_flow_parameter({name!r}) of an "
            "amortized flow runs in build_flow, once the context size C is "
            "known."
        )
      if context_initializer is None:
        context_initializer = keras.initializers.RandomNormal(
            stddev=0.01 / math.sqrt(context_dim)
        )
      kernel = self.add_weight(
          name=f"{name}_context_kernel",
          shape=(context_dim, int(np.prod(shape, dtype=np.int64))),
          initializer=context_initializer,
          autocast=False,
      )
    self._flow_params[name] = (shape, bias, kernel)

  def flow_parameters(self, context: Any = None) -> dict[str, Any]:
    """Returns {name: tensor} of the declared parameters, in `math_dtype`.

    Amortized flows: [*Lc, *shape] with Lc the context's leading shape,
    `bias + context @ kernel` computed once on the context as given (never
    tiled). Global flows: [*shape], no leading axis. Both broadcast against
    z [*L, d] when indexed from the right (`p[..., k, :]`, einsum with `...`).

    Args:
      context: [..., C] (amortized flows; ignored by global ones).
    """
    dtype = self.math_dtype
    params = {}
    for name, (shape, bias, kernel) in self._flow_params.items():
      value = ops.cast(bias, dtype)
      if kernel is None:
        params[name] = value
      else:
        if context is None:
          raise ValueError(
              f"{self.flow_name} flow is amortized: flow_parameters needs "
              "the context [..., C]."
          )
        flat = backend.matmul(ops.cast(context, dtype),
                              ops.cast(kernel, dtype))
        params[name] = split_last_axis(flat, shape) + value
    return params

  # ------------------------------------------------------------------ calling
  @property
  def event_size(self) -> int:
    """The size d of z (`dim`), known once the flow is built.

    Raises:
      ValueError: the flow is not built yet.
    """
    if self.dim is None:
      raise ValueError(
          f"The {self.flow_name} flow is not built yet: d is unknown."
      )
    return self.dim

  @property
  def math_dtype(self) -> str:
    """The dtype of the flow's maths: "float32" under 16-bit compute dtypes.

    Otherwise the compute dtype ("float32", "float64").
    """
    if self.compute_dtype in ("float16", "bfloat16"):
      return "float32"
    return str(self.compute_dtype)

  @property
  def sublayer_dtype(self) -> Any:
    """Dtype policy of conditioner networks.

    `math_dtype` under mixed precision.
    """
    if self.compute_dtype in ("float16", "bfloat16"):
      return "float32"
    return self.dtype_policy

  def sum_log_det(self, terms: Any, axis: int = -1) -> Any:
    """Sums log-det terms over `axis` in `math_dtype`."""
    return ops.sum(ops.cast(terms, self.math_dtype), axis=axis)

  def _check_inputs(self, z: Any, context: Any) -> Shape | None:
    """Checks the shapes of z [..., d] and context [..., C].

    Returns:
      The broadcast leading shape L (static, None where unknown) when the flow
      is amortized, else None.

    Raises:
      ValueError: a rank-0 input, a last axis that is not d (or C), a missing
        context, or leading shapes that do not broadcast (names both).
    """
    z_shape = tuple(z.shape)
    if len(z_shape) < 1:
      raise ValueError(
          f"{self.flow_name} flow expects z of shape [..., d], got a scalar "
          f"(shape {z_shape})."
      )
    if self.dim is not None and z_shape[-1] not in (None, self.dim):
      raise ValueError(
          f"{self.flow_name} flow expects z of shape [..., {self.dim}], got "
          f"shape {z_shape}."
      )
    if not self.amortized:
      return None
    if context is None:
      raise ValueError(
          f"{self.flow_name} flow is amortized (context_dim="
          f"{self.context_dim}) and needs `context` [..., C]."
      )
    context_shape = tuple(context.shape)
    if len(context_shape) < 1:
      raise ValueError(
          f"{self.flow_name} flow expects context of shape [..., C], got a "
          f"scalar (shape {context_shape})."
      )
    if (self.context_dim is not None
        and context_shape[-1] not in (None, self.context_dim)):
      raise ValueError(
          f"{self.flow_name} flow expects context of shape "
          f"[..., {self.context_dim}], got shape {context_shape}."
      )
    return broadcast_leading_shapes(z_shape, context_shape, self.flow_name)

  def _prepare(self, z: Any, context: Any) -> tuple[Any, Any]:
    """Checks, casts to `math_dtype` and broadcasts z to [*L, d]."""
    context = context if self.amortized else None
    leading = self._check_inputs(z, context)
    z = ops.cast(z, self.math_dtype)
    if context is not None:
      context = ops.cast(context, self.math_dtype)
    if leading is not None:
      z = broadcast_to_leading(z, context, leading)
    return z, context

  def call(self, z: Any, context: Any = None) -> tuple[Any, Any]:
    """Applies the flow. Global flows ignore `context`.

    Args:
      z: [..., d] input.
      context: [..., C] per-example features (amortized flows only); its
        leading axes broadcast against z's.

    Returns:
      z_out: [*L, d] in the compute dtype; log_det: [*L] in `math_dtype`,
      log|det dz_out/dz|, with L the broadcast of the leading shapes.
    """
    z, context = self._prepare(z, context)
    y, log_det = self.forward_and_log_det(z, context)
    return ops.cast(y, self.compute_dtype), log_det

  def forward_and_log_det(self, z: Any, context: Any) -> tuple[Any, Any]:
    """(z' [..., d], log|det dz'/dz| [...]) in `math_dtype` (subclasses).

    z [*L, d] is broadcast already; context [*Lc, C] broadcasts against it.
    """
    raise NotImplementedError

  def inverse(self, y: Any, context: Any = None) -> tuple[Any, Any]:
    """Inverts the flow: returns (z [*L, d], log_det_inverse [*L]).

    The same shape rules as `call`.

    Raises:
      NotImplementedError: the flow has no analytic inverse (planar, radial,
        Sylvester).
    """
    if not self.invertible:
      raise NotImplementedError(
          f"The {self.flow_name} flow has no analytic inverse."
      )
    y = ops.convert_to_tensor(y)
    context = context if self.amortized else None
    if context is not None:
      context = ops.convert_to_tensor(context)
    self._check_inputs(y, context)
    if not self.built:
      self.build(tuple(y.shape),
                 None if context is None else tuple(context.shape))
    # Rounded to the compute dtype, as a call's inputs are.
    y = ops.cast(y, self.compute_dtype)
    if context is not None:
      context = ops.cast(context, self.compute_dtype)
    y, context = self._prepare(y, context)
    z, log_det = self.inverse_and_log_det(y, context)
    return ops.cast(z, self.compute_dtype), log_det

  def inverse_and_log_det(self, y: Any, context: Any) -> tuple[Any, Any]:
    """(z [..., d], log|det dz/dy| [...]) in `math_dtype` (subclasses)."""
    raise NotImplementedError

  def as_bijector(self, context: Any = None) -> Any:
    """Returns this flow as a `tfp.bijectors.Bijector` (event rank 1).

    TensorFlow backend only. The bijector calls the layer, so it shares its
    weights; `context` broadcasts against the points it transforms, as in a
    call. Flows without an analytic inverse still give `log_prob` of their
    own samples, through TFP's bijector cache.

    Raises:
      RuntimeError: the Keras backend is not TensorFlow.
    """
    return make_bijector(self, context)

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(
        dim=self.dim, context_dim=self.context_dim, amortized=self.amortized
    )
    return config


def broadcast_to_leading(z: Any, context: Any, leading: Shape) -> Any:
  """Broadcasts z [*Lz, d] to [*L, d], L its broadcast with context [*Lc, C].

  A no-op when z's static leading shape is L already (an unknown size of z
  facing an unknown size of the context counts as equal: the backend's
  broadcasting of the flow's maths handles it).
  """
  z_lead = tuple(z.shape[:-1])
  if len(z_lead) == len(leading) and all(
      a == b for a, b in zip(z_lead, leading)):
    return z
  if None not in leading:
    return ops.broadcast_to(z, tuple(leading) + (z.shape[-1],))
  # Unknown sizes (TensorFlow graphs): the broadcast size of each axis is the
  # larger of the two (one of them is 1 when they differ).
  rank = len(leading)
  z_dyn = ops.shape(z)
  c_dyn = ops.shape(context)
  z_dims = [1] * (rank - len(z_lead)) + list(z_dyn[:-1])
  c_dims = [1] * (rank - (len(c_dyn) - 1)) + list(c_dyn[:-1])
  target = [
      s if s is not None else ops.maximum(a, b)
      for s, a, b in zip(leading, z_dims, c_dims)
  ]
  return ops.broadcast_to(z, tuple(target) + (z.shape[-1],))


def make_bijector(flow: keras.layers.Layer, context: Any = None) -> Any:
  """`vib_flows.flows.bijector.FlowBijector(flow, context)`, TensorFlow only.

  Raises:
    RuntimeError: the Keras backend is not TensorFlow (TFP bijectors are
      TensorFlow objects).
  """
  backend = keras.backend.backend()
  if backend != "tensorflow":
    raise RuntimeError(
        f"{getattr(flow, 'flow_name', 'flow')}.as_bijector needs the "
        "TensorFlow backend (it returns a TensorFlow Probability bijector); "
        f"the Keras backend is {backend!r} (KERAS_BACKEND=tensorflow)."
    )
  # Imported here: TensorFlow Probability is not loaded with the flows.
  from vib_flows.flows import bijector  # pylint: disable=g-import-not-at-top
  return bijector.FlowBijector(flow, context)
