"""The base class of every normalizing-flow layer.

A flow layer maps z [batch, d] to z' [batch, d] and returns the
log-determinant of its Jacobian for each example:

    z_out, log_det = layer(z, context=None)        # log_det: [batch]
    log q_k(z_k) = log q_{k-1}(z_{k-1}) - log |det dz_k / dz_{k-1}|

Global or amortized parameters (van den Berg et al. 2018, "Sylvester
Normalizing Flows", Sec. 4): a global flow owns its parameters; an amortized
flow (built with `context_dim=C` or `amortized=True`) computes them from
`context` [batch, C], the encoder's features of each example, so that every
example has its own flow.

Subclasses implement `build_flow(dim)` and `forward_and_log_det(z, context)`,
and where an analytic inverse exists set `invertible = True` and implement
`inverse_and_log_det(y, context)`. Parameters that amortize are declared with
`add_flow_parameter` and read with `flow_parameters(context)`; flows whose
conditioner is a network (IAF, MAF, coupling) feed `context` to that network.

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
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp


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
    """Checks the shapes and creates the weights (`build_flow`) once."""
    if self.built:
      return
    z_shape = tuple(z_shape)
    if len(z_shape) != 2 or z_shape[-1] is None:
      raise ValueError(
          f"{self.flow_name} flow expects z of shape [batch, d] with a known "
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
            "[batch, C] (or context_dim=C) to be built."
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
    to [batch, *shape], with `bias` initialized like the global weight and
    `kernel` [C, prod(shape)] initialized small, so an untrained amortized flow
    starts close to the global one.

    Args:
      name: parameter name (key of `flow_parameters`).
      shape: parameter shape, without a batch dimension.
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

  def flow_parameters(self, context: tf.Tensor | None = None
                      ) -> dict[str, tf.Tensor]:
    """Returns {name: tensor [batch or 1, *shape]} of the declared parameters.

    Global parameters get a leading axis of size 1, so that the same batched
    code serves both forms by broadcasting. All are in `math_dtype`.
    """
    dtype = self.math_dtype
    params = {}
    for name, (shape, bias, kernel) in self._flow_params.items():
      value = tf.cast(bias, dtype)[tf.newaxis]
      if kernel is None:
        params[name] = value
      else:
        flat = tf.matmul(tf.cast(context, dtype), tf.cast(kernel, dtype))
        params[name] = tf.reshape(flat, (-1,) + shape) + value
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
  def math_dtype(self) -> tf.DType:
    """The dtype of the flow's maths: float32 under 16-bit compute dtypes.

    Otherwise the compute dtype (float32, float64).
    """
    if self.compute_dtype in ("float16", "bfloat16"):
      return tf.float32
    return tf.as_dtype(self.compute_dtype)

  @property
  def sublayer_dtype(self) -> Any:
    """Dtype policy of conditioner networks.

    `math_dtype` under mixed precision.
    """
    if self.compute_dtype in ("float16", "bfloat16"):
      return "float32"
    return self.dtype_policy

  def sum_log_det(self, terms: tf.Tensor, axis: int = -1) -> tf.Tensor:
    """Sums log-det terms over `axis` in `math_dtype`."""
    return tf.reduce_sum(tf.cast(terms, self.math_dtype), axis=axis)

  def _check_inputs(self, z: tf.Tensor, context: tf.Tensor | None) -> None:
    if z.shape.rank != 2:
      raise ValueError(
          f"{self.flow_name} flow expects z of shape [batch, d], got shape "
          f"{z.shape}."
      )
    if self.amortized:
      if context is None:
        raise ValueError(
            f"{self.flow_name} flow is amortized (context_dim="
            f"{self.context_dim}) and needs `context` [batch, C]."
        )
      if context.shape.rank != 2:
        raise ValueError(
            f"{self.flow_name} flow expects context of shape [batch, C], got "
            f"shape {context.shape}."
        )

  def call(self, z: tf.Tensor, context: tf.Tensor | None = None
           ) -> tuple[tf.Tensor, tf.Tensor]:
    """Applies the flow. Global flows ignore `context`.

    Args:
      z: [batch, d] input.
      context: [batch, C] per-example features (amortized flows only).

    Returns:
      z_out: [batch, d] in the compute dtype; log_det: [batch] in `math_dtype`,
      log|det dz_out/dz|.
    """
    context = context if self.amortized else None
    self._check_inputs(z, context)
    z, context = self._to_math_dtype(z, context)
    y, log_det = self.forward_and_log_det(z, context)
    return tf.cast(y, self.compute_dtype), log_det

  def _to_math_dtype(self, z: tf.Tensor, context: tf.Tensor | None
                     ) -> tuple[tf.Tensor, tf.Tensor | None]:
    z = tf.cast(z, self.math_dtype)
    if context is not None:
      context = tf.cast(context, self.math_dtype)
    return z, context

  def forward_and_log_det(self, z: tf.Tensor, context: tf.Tensor | None
                          ) -> tuple[tf.Tensor, tf.Tensor]:
    """(z' [batch, d], log|det dz'/dz| [batch]) in `math_dtype` (subclasses)."""
    raise NotImplementedError

  def inverse(self, y: tf.Tensor, context: tf.Tensor | None = None
              ) -> tuple[tf.Tensor, tf.Tensor]:
    """Inverts the flow: returns (z, log_det_inverse [batch]).

    Raises:
      NotImplementedError: the flow has no analytic inverse (planar, radial,
        Sylvester).
    """
    if not self.invertible:
      raise NotImplementedError(
          f"The {self.flow_name} flow has no analytic inverse."
      )
    y = tf.convert_to_tensor(y)
    context = context if self.amortized else None
    if context is not None:
      context = tf.convert_to_tensor(context)
    self._check_inputs(y, context)
    if not self.built:
      self.build(y.shape, None if context is None else context.shape)
    # Rounded to the compute dtype, as a call's inputs are.
    y = tf.cast(tf.cast(y, self.compute_dtype), self.math_dtype)
    if context is not None:
      context = tf.cast(tf.cast(context, self.compute_dtype), self.math_dtype)
    z, log_det = self.inverse_and_log_det(y, context)
    return tf.cast(z, self.compute_dtype), log_det

  def inverse_and_log_det(self, y: tf.Tensor, context: tf.Tensor | None
                          ) -> tuple[tf.Tensor, tf.Tensor]:
    """(z [batch, d], log|det dz/dy| [batch]) in `math_dtype` (subclasses)."""
    raise NotImplementedError

  def as_bijector(self, context: tf.Tensor | None = None
                  ) -> "FlowBijector":
    """Returns this flow as a `tfp.bijectors.Bijector` (event rank 1).

    The bijector calls the layer, so it shares its weights; with `context`, its
    batch must match the batch of the points it transforms. Flows without an
    analytic inverse still give `log_prob` of their own samples, through TFP's
    bijector cache.
    """
    return FlowBijector(self, context)

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(
        dim=self.dim, context_dim=self.context_dim, amortized=self.amortized
    )
    return config


class FlowBijector(tfp.bijectors.Bijector):
  """A `Flow` layer (or `FlowStack`) seen as a TFP bijector of event rank 1."""

  def __init__(self, flow: keras.layers.Layer,
               context: tf.Tensor | None = None, name: str | None = None):
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
