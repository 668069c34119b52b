"""The flow contract as reusable checks, for vib_flows' flows and your own.

Every check raises `AssertionError` (with a message naming the check and the
shapes) when a flow breaks the contract of `vib_flows.flows.Flow`:

* log-det: `layer(z, context)` returns log|det dz_out/dz| for every point,
  compared with log|det J| of the backend's own autodiff Jacobian, in float64
  (`numpy.linalg.slogdet` as the reference). The Jacobian is the full one of
  the whole batch (`tf.GradientTape.jacobian`, `jax.jacfwd`,
  `torch.func.jacrev`), so a point's output depending on another point (e.g.
  through a batch statistic) fails too.
* inverse: `layer.inverse(layer(z)[0])` gives back z and minus the log-det.
* leading shapes: z `[*L, d]` with any number of leading axes (ranks 1 to 4
  by default) gives the same numbers as applying the layer slice by slice.
* context broadcasting (amortized flows): the leading axes of z and context
  broadcast by NumPy's rules (z `[S, B, d]` with context `[B, C]` equals the
  context tiled to `[S, B, C]`); shapes that do not broadcast are refused
  with a ValueError naming both shapes.
* amortized flows differ per example, and refuse a call without context.
* serialization: `get_config`/`from_config` gives the same layer, and a
  functional Keras model holding the flow saves to `.keras` and reloads with
  bit-equal outputs.

`check_flow` runs them all on a flow factory:

    from vib_flows.flows import testing
    testing.check_flow(MyFlow, dim=3)                  # global
    testing.check_flow(MyFlow, dim=3, context_dim=2)   # amortized

The checks run on the current Keras backend (TensorFlow, JAX or PyTorch);
nothing here imports TensorFlow unless it is the backend. On JAX, float64
needs `jax_enable_x64`: `check_flow` switches it on for its own duration.
"""

from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
import contextlib
import os
import re
import tempfile
from typing import Any

import keras
import numpy as np

# Leading shapes L of z [*L, d] per rank of z (rank 1: a single point).
LEADING_SHAPES = {1: (), 2: (3,), 3: (2, 3), 4: (2, 2, 3)}
# (z's leading shape, context's leading shape) pairs that broadcast, and
# pairs that do not.
BROADCASTING = (
    ((2, 3), (3,)),        # z [S, B, d], context [B, C]: the typical use.
    ((3,), (2, 3)),        # z [B, d], context [S, B, C].
    ((2, 1, 3), (4, 1)),   # Size-1 axes stretch on both sides.
    ((3,), ()),            # One context for a batch of points.
)
NOT_BROADCASTING = (((2, 3), (4,)), ((3,), (2,)))


def backend() -> str:
  """The name of the Keras backend the checks run on."""
  return keras.backend.backend()


@contextlib.contextmanager
def float64_enabled() -> Iterator[None]:
  """Makes float64 available on the current backend within the context.

  JAX computes in float32 unless `jax_enable_x64` is on; TensorFlow and
  PyTorch always have float64.
  """
  if backend() == "jax":
    import jax  # pylint: disable=g-import-not-at-top

    with jax.enable_x64(True):
      yield
  else:
    yield


def to_numpy(x: Any) -> np.ndarray:
  """A backend tensor (or array) as a NumPy array."""
  return np.asarray(keras.ops.convert_to_numpy(x))


def randomize_weights(layer: keras.layers.Layer, scale: float = 0.5,
                      seed: int = 0) -> None:
  """Sets every trainable weight of `layer` to N(0, scale^2) draws.

  A flow near its initialization is often close to the identity, where a
  wrong log-det or inverse can go unnoticed; random weights, including raw
  values that a constrained parameterization must map into the invertible
  set (planar w^T u < -1), test the flow as it is after training.

  Raises:
    AssertionError: the layer has no trainable weights.
  """
  weights = layer.trainable_weights
  assert weights, f"{layer.name} has no trainable weights (is it built?)."
  rng = np.random.default_rng(seed)
  for w in weights:
    w.assign(rng.normal(scale=scale, size=tuple(w.shape)).astype(w.dtype))


def random_inputs(dim: int, leading_shape: Sequence[int],
                  context_dim: int | None = None,
                  context_shape: Sequence[int] | None = None,
                  dtype: str = "float64", seed: int = 1
                  ) -> tuple[Any, Any]:
  """Standard-normal z [*leading_shape, dim] and context [*context_shape, C].

  Args:
    dim: event size d.
    leading_shape: leading axes of z.
    context_dim: C; None gives no context.
    context_shape: leading axes of the context (default `leading_shape`).
    dtype: dtype of both tensors.
    seed: NumPy seed.

  Returns:
    (z, context or None) as backend tensors.
  """
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(*leading_shape, dim))
  z = keras.ops.convert_to_tensor(z, dtype)
  if context_dim is None:
    return z, None
  if context_shape is None:
    context_shape = leading_shape
  context = rng.normal(size=(*context_shape, context_dim))
  return z, keras.ops.convert_to_tensor(context, dtype)


def jacobian(fn: Callable[[Any], Any], z: Any) -> np.ndarray:
  """The Jacobian d fn(z) / dz by the backend's autodiff, as NumPy.

  TensorFlow: `tf.GradientTape.jacobian`; JAX: `jax.jacfwd`; PyTorch:
  `torch.func.jacrev`.

  Args:
    fn: maps a tensor shaped like `z` to a tensor.
    z: the point.

  Returns:
    [*fn(z).shape, *z.shape].
  """
  name = backend()
  if name == "tensorflow":
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    z = tf.convert_to_tensor(z)
    with tf.GradientTape() as tape:
      tape.watch(z)
      y = fn(z)
    return tape.jacobian(y, z).numpy()
  if name == "jax":
    import jax  # pylint: disable=g-import-not-at-top

    return np.asarray(jax.jacfwd(fn)(z))
  if name == "torch":
    import torch  # pylint: disable=g-import-not-at-top

    return torch.func.jacrev(fn)(z).detach().cpu().numpy()
  raise ValueError(f"No autodiff Jacobian for the Keras backend {name!r}.")


def _shape(x: Any) -> tuple[int, ...]:
  return tuple(int(s) for s in x.shape)


def _where(z: Any, context: Any) -> str:
  where = f"z of shape {_shape(z)}"
  if context is not None:
    where += f", context of shape {_shape(context)}"
  return where


def _call(layer: keras.layers.Layer, z: Any, context: Any
          ) -> tuple[np.ndarray, np.ndarray]:
  y, log_det = layer(z, context=context)
  return to_numpy(y), to_numpy(log_det)


def check_log_det(layer: keras.layers.Layer, z: Any, context: Any = None,
                  rtol: float = 1e-6, atol: float = 1e-9) -> None:
  """Checks the log-det against log|det| of the autodiff Jacobian.

  The Jacobian of the whole output [*L, d] with respect to the whole input
  [*L, d] must be block diagonal (point i's output depends on point i only),
  and log|det| of each d x d block (`numpy.linalg.slogdet`, float64) must
  equal the layer's log-det. Run it in float64 (`dtype="float64"` layers and
  inputs) for a tolerance near float64 rounding.

  Args:
    layer: a built flow layer (or `FlowStack`).
    z: [*L, d] input, L the full leading shape (broadcast with the context's).
    context: [*L, C] or broadcastable; None for global flows.
    rtol: relative tolerance on the log-det.
    atol: absolute tolerance on the log-det.

  Raises:
    AssertionError: wrong shapes, a wrong log-det, or points that interact.
  """
  y, log_det = _call(layer, z, context)
  shape = _shape(z)
  where = _where(z, context)
  assert y.shape == shape, (
      f"{layer.name}: z_out has shape {y.shape}, expected {shape} ({where}).")
  assert log_det.shape == shape[:-1], (
      f"{layer.name}: log_det has shape {log_det.shape}, expected "
      f"{shape[:-1]} ({where}).")
  assert np.all(np.isfinite(y)) and np.all(np.isfinite(log_det)), (
      f"{layer.name}: non-finite output ({where}).")

  def forward(x: Any) -> Any:
    return layer(x, context=context)[0]

  jac = jacobian(forward, z).astype(np.float64)
  dim = shape[-1]
  n = int(np.prod(shape[:-1], dtype=np.int64))
  jac = jac.reshape(n, dim, n, dim)
  blocks = jac[np.arange(n), :, np.arange(n), :]  # [n, d, d]
  off = jac.copy()
  off[np.arange(n), :, np.arange(n), :] = 0.0
  assert np.max(np.abs(off), initial=0.0) == 0.0, (
      f"{layer.name}: point i's output depends on other points ({where}); "
      "a flow maps every point on its own.")
  sign, expected = np.linalg.slogdet(blocks)
  assert np.all(sign != 0), f"{layer.name}: singular Jacobian ({where})."
  np.testing.assert_allclose(
      log_det.reshape(n), expected, rtol=rtol, atol=atol,
      err_msg=(f"{layer.name}: log_det differs from log|det| of the autodiff "
               f"Jacobian ({where})."))


def check_inverse(layer: keras.layers.Layer, z: Any, context: Any = None,
                  rtol: float = 1e-6, atol: float = 1e-8) -> None:
  """Checks `inverse` by a round trip: z -> y -> z, log-dets opposite.

  Args:
    layer: a built flow layer with `invertible = True`.
    z: [*L, d] input.
    context: broadcastable context, or None.
    rtol: relative tolerance.
    atol: absolute tolerance.

  Raises:
    AssertionError: the round trip does not give z back, or the inverse
      log-det is not minus the forward one.
  """
  y, log_det = layer(z, context=context)
  z_back, log_det_inverse = layer.inverse(y, context=context)
  where = _where(z, context)
  np.testing.assert_allclose(
      to_numpy(z_back), to_numpy(z), rtol=rtol, atol=atol,
      err_msg=f"{layer.name}: inverse(forward(z)) != z ({where}).")
  np.testing.assert_allclose(
      to_numpy(log_det_inverse), -to_numpy(log_det), rtol=rtol, atol=atol,
      err_msg=(f"{layer.name}: the inverse log-det is not minus the forward "
               f"log-det ({where})."))


def _slice_reference(layer: keras.layers.Layer, z: Any, context: Any,
                     inverse: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Stacks the layer applied to z[i], context[i] along the first axis."""
  apply = layer.inverse if inverse else layer
  ys, log_dets = [], []
  for i in range(_shape(z)[0]):
    y, log_det = apply(z[i], context=None if context is None else context[i])
    ys.append(to_numpy(y))
    log_dets.append(to_numpy(log_det))
  return np.stack(ys), np.stack(log_dets)


def check_leading_shapes(layer: keras.layers.Layer, dim: int,
                         context_dim: int | None = None,
                         ranks: Sequence[int] = (1, 2, 3, 4),
                         dtype: str = "float64", rtol: float = 1e-10,
                         atol: float = 1e-12, seed: int = 1) -> None:
  """Checks z [*L, d] of every rank against slice-by-slice application.

  For rank r >= 2, `layer(z, c)[k][i]` must equal `layer(z[i], c[i])[k]`
  (a rank r - 1 call), for the output and the log-det, and for the inverse
  of invertible flows; rank 1 (a single point) gives a log-det of shape ().

  Args:
    layer: a built flow layer.
    dim: event size d.
    context_dim: C of an amortized flow (context of the same leading shape),
      None for a global flow.
    ranks: ranks of z to check (leading shapes from `LEADING_SHAPES`).
    dtype: dtype of the inputs (the layer's).
    rtol: relative tolerance (float64 rounding of a different batching).
    atol: absolute tolerance.
    seed: NumPy seed of the inputs.

  Raises:
    AssertionError: a shape or a value differs.
  """
  for rank in ranks:
    leading = LEADING_SHAPES[rank]
    z, context = random_inputs(dim, leading, context_dim, dtype=dtype,
                               seed=seed + rank)
    where = _where(z, context)
    y, log_det = _call(layer, z, context)
    assert y.shape == (*leading, dim) and log_det.shape == leading, (
        f"{layer.name}: got z_out {y.shape} and log_det {log_det.shape} for "
        f"{where}; expected {(*leading, dim)} and {leading}.")
    directions = [False, True] if getattr(layer, "invertible", False) else [
        False]
    for inverse in directions:
      if inverse:
        y, log_det = (to_numpy(t) for t in layer.inverse(z, context=context))
        assert y.shape == (*leading, dim) and log_det.shape == leading, (
            f"{layer.name}: the inverse gave {y.shape} and {log_det.shape} "
            f"for {where}.")
      if rank == 1:
        continue
      y_ref, log_det_ref = _slice_reference(layer, z, context, inverse)
      kind = "inverse" if inverse else "forward"
      np.testing.assert_allclose(
          y, y_ref, rtol=rtol, atol=atol,
          err_msg=(f"{layer.name}: {kind} of {where} differs from its "
                   "slice-by-slice application."))
      np.testing.assert_allclose(
          log_det, log_det_ref, rtol=rtol, atol=atol,
          err_msg=(f"{layer.name}: {kind} log-det of {where} differs from "
                   "its slice-by-slice application."))


def check_context_broadcasting(layer: keras.layers.Layer, dim: int,
                               context_dim: int, dtype: str = "float64",
                               rtol: float = 1e-10, atol: float = 1e-12,
                               seed: int = 1) -> None:
  """Checks that z's and the context's leading axes broadcast (NumPy rules).

  For each pair of leading shapes in `BROADCASTING`, the result must equal
  the layer applied to both inputs explicitly broadcast to the common shape
  (e.g. the context tiled S times); for each pair in `NOT_BROADCASTING`, the
  call (and the inverse) must raise a ValueError whose message names both
  shapes.

  Args:
    layer: a built amortized flow layer.
    dim: event size d.
    context_dim: C.
    dtype: dtype of the inputs.
    rtol: relative tolerance.
    atol: absolute tolerance.
    seed: NumPy seed.

  Raises:
    AssertionError: a result differs or a bad pair is not refused clearly.
  """
  directions = [False, True] if getattr(layer, "invertible", False) else [
      False]
  for z_lead, c_lead in BROADCASTING:
    z, context = random_inputs(dim, z_lead, context_dim, c_lead, dtype, seed)
    lead = np.broadcast_shapes(z_lead, c_lead)
    z_full = keras.ops.broadcast_to(z, (*lead, dim))
    c_full = keras.ops.broadcast_to(context, (*lead, context_dim))
    where = _where(z, context)
    for inverse in directions:
      apply = layer.inverse if inverse else layer
      y, log_det = (to_numpy(t) for t in apply(z, context=context))
      y_ref, log_det_ref = (to_numpy(t) for t in apply(z_full,
                                                       context=c_full))
      assert y.shape == (*lead, dim) and log_det.shape == lead, (
          f"{layer.name}: {where} gave z_out {y.shape} and log_det "
          f"{log_det.shape}; expected {(*lead, dim)} and {lead}.")
      kind = "inverse" if inverse else "forward"
      np.testing.assert_allclose(
          y, y_ref, rtol=rtol, atol=atol,
          err_msg=(f"{layer.name}: {kind} of {where} differs from the inputs "
                   "broadcast explicitly."))
      np.testing.assert_allclose(log_det, log_det_ref, rtol=rtol, atol=atol,
                                 err_msg=f"{layer.name}: {kind} log-det.")
  for z_lead, c_lead in NOT_BROADCASTING:
    z, context = random_inputs(dim, z_lead, context_dim, c_lead, dtype, seed)
    for inverse in directions:
      apply = layer.inverse if inverse else layer
      _assert_value_error(
          apply, z, context, [(*z_lead, dim), (*c_lead, context_dim)],
          f"{layer.name}: z {(*z_lead, dim)} with context "
          f"{(*c_lead, context_dim)} (shapes that do not broadcast)")


def _shape_pattern(shape: Sequence[int]) -> str:
  """A regex matching `shape` written as a tuple or list."""
  return r"[\(\[]" + r",\s*".join(str(s) for s in shape) + r",?[\)\]]"


def _assert_value_error(apply: Callable[..., Any], z: Any, context: Any,
                        shapes: Sequence[Any], what: str) -> None:
  try:
    apply(z, context=context)
  except ValueError as e:
    message = str(e)
    for shape in shapes:
      assert re.search(_shape_pattern(shape), message), (
          f"{what}: the ValueError does not name the shape {tuple(shape)}: "
          f"{message!r}")
    return
  raise AssertionError(f"{what}: no ValueError was raised.")


def check_amortized(layer: keras.layers.Layer, dim: int, context_dim: int,
                    dtype: str = "float64", seed: int = 1) -> None:
  """Checks that an amortized flow differs per example and needs a context.

  The same z with two different contexts must give different outputs, and a
  call without context must raise a ValueError mentioning the context.

  Args:
    layer: a built amortized flow layer.
    dim: event size d.
    context_dim: C.
    dtype: dtype of the inputs.
    seed: NumPy seed.

  Raises:
    AssertionError: the context has no effect, or no context is accepted.
  """
  z, context = random_inputs(dim, (1,), context_dim, (2,), dtype, seed)
  z = keras.ops.concatenate([z, z], axis=0)
  y, _ = _call(layer, z, context)
  assert np.max(np.abs(y[0] - y[1])) > 1e-6, (
      f"{layer.name}: the same z with two contexts gives the same output: the "
      "flow is not amortized.")
  try:
    layer(z)
  except ValueError as e:
    assert "context" in str(e), (
        f"{layer.name}: the error for a missing context does not say so: "
        f"{e}")
  else:
    raise AssertionError(
        f"{layer.name}: an amortized flow accepted a call without context.")


def check_config_round_trip(layer: keras.layers.Layer, z: Any,
                            context: Any = None) -> None:
  """Checks `from_config(get_config())`: same config, same outputs.

  Args:
    layer: a built flow layer.
    z: an input for both layers.
    context: its context, or None.

  Raises:
    AssertionError: the clone's config or outputs differ.
  """
  config = layer.get_config()
  clone = type(layer).from_config(config)
  assert clone.get_config() == config, (
      f"{layer.name}: from_config(get_config()) has another config.")
  clone(z, context=context)  # Builds it if its shapes were not in the config.
  clone.set_weights(layer.get_weights())
  for a, b in zip(_call(clone, z, context), _call(layer, z, context)):
    np.testing.assert_array_equal(
        a, b, err_msg=f"{layer.name}: the clone from its config differs.")


def check_keras_saving(layer: keras.layers.Layer, dim: int,
                       context_dim: int | None = None,
                       directory: str | None = None, seed: int = 2) -> None:
  """Checks a functional model holding the flow through a `.keras` file.

  Builds `keras.Model([z, context], layer(z, context))`, saves it, reloads it
  with `keras.models.load_model` (the flow's class must be registered:
  `vib_flows.flows.register` does it) and compares the outputs bit for bit.

  Args:
    layer: a built flow layer.
    dim: event size d.
    context_dim: C of an amortized flow, or None.
    directory: where to write the file (default: a temporary directory).
    seed: NumPy seed of the inputs.

  Raises:
    AssertionError: the reloaded model's outputs differ.
  """
  dtype = layer.compute_dtype
  z_in = keras.Input((dim,), dtype=dtype, name="z")
  inputs = [z_in]
  context_in = None
  if context_dim is not None:
    context_in = keras.Input((context_dim,), dtype=dtype, name="context")
    inputs.append(context_in)
  model = keras.Model(inputs, layer(z_in, context=context_in))
  z, context = random_inputs(dim, (4,), context_dim, dtype=dtype, seed=seed)
  values = [z] if context is None else [z, context]
  expected = [to_numpy(t) for t in model(values)]
  with contextlib.ExitStack() as stack:
    if directory is None:
      directory = stack.enter_context(tempfile.TemporaryDirectory())
    path = os.path.join(directory, f"{layer.name}.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
  got = [to_numpy(t) for t in reloaded(values)]
  for a, b in zip(got, expected):
    np.testing.assert_array_equal(
        a, b, err_msg=f"{layer.name}: the reloaded .keras model differs.")


def check_flow(flow_factory: Callable[..., keras.layers.Layer], dim: int,
               context_dim: int | None = None, *,
               ranks: Sequence[int] = (1, 2, 3, 4), weight_scale: float = 0.5,
               seed: int = 0, log_det_rtol: float = 1e-6,
               log_det_atol: float = 1e-9, saving: bool = True) -> None:
  """Runs every check of the flow contract on a new flow.

  The flow is made in float64 with `flow_factory(dim=dim, dtype="float64")`
  (global) or `flow_factory(dim=dim, context_dim=context_dim,
  dtype="float64")` (amortized), e.g. the flow class itself,
  `functools.partial(vib_flows.flows.get, "maf")` or a function returning a
  `FlowStack`; its trainable weights are then set at random
  (`randomize_weights`). Checks, at every rank in `ranks`:
  `check_log_det`, `check_inverse` (flows with `invertible = True`),
  `check_leading_shapes`; for amortized flows `check_amortized` and
  `check_context_broadcasting`; then `check_config_round_trip` and, with
  `saving`, `check_keras_saving` (a float32 copy of the flow, the dtype of a
  typical model).

  Args:
    flow_factory: makes a new flow layer from keyword arguments `dim`,
      `dtype` and, when amortized, `context_dim`.
    dim: event size d.
    context_dim: C for an amortized flow; None for a global one.
    ranks: ranks of z to check (1 to 4).
    weight_scale: stddev of the random weights (None keeps the initial ones).
    seed: seed of the weights and inputs.
    log_det_rtol: relative tolerance of the log-det against autodiff.
    log_det_atol: absolute tolerance of the log-det against autodiff.
    saving: also run `check_keras_saving` (writes a temporary file).

  Raises:
    AssertionError: the flow breaks the contract (the message says where).
  """
  kwargs: dict[str, Any] = {"dim": dim}
  if context_dim is not None:
    kwargs["context_dim"] = context_dim
  with float64_enabled():
    layer = flow_factory(dtype="float64", **kwargs)
    z, context = random_inputs(dim, (2,), context_dim, seed=seed + 1)
    layer(z, context=context)  # Builds a flow that waited for its inputs.
    if weight_scale is not None:
      randomize_weights(layer, weight_scale, seed)
    invertible = getattr(layer, "invertible", False)
    for rank in ranks:
      z, context = random_inputs(dim, LEADING_SHAPES[rank], context_dim,
                                 seed=seed + 10 + rank)
      check_log_det(layer, z, context, log_det_rtol, log_det_atol)
      if invertible:
        check_inverse(layer, z, context)
    check_leading_shapes(layer, dim, context_dim, ranks, seed=seed + 20)
    if context_dim is not None:
      check_amortized(layer, dim, context_dim, seed=seed + 30)
      check_context_broadcasting(layer, dim, context_dim, seed=seed + 40)
    z, context = random_inputs(dim, (3,), context_dim, seed=seed + 50)
    check_config_round_trip(layer, z, context)
  if saving:
    layer32 = flow_factory(dtype="float32", **kwargs)
    z, context = random_inputs(dim, (2,), context_dim, dtype="float32")
    layer32(z, context=context)
    if weight_scale is not None:
      randomize_weights(layer32, weight_scale, seed)
    check_keras_saving(layer32, dim, context_dim, seed=seed + 60)
