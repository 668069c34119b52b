"""The few places where one Keras backend needs its own code in the flows.

Everything else in `vib_flows.flows` is plain `keras.ops`. Keras's dtype
rules compute some 64-bit ops in 32 bits on some backends (float64 in,
float32 out); the flows must keep float64 (their log-dets are tested against
float64 autodiff Jacobians on every backend), so those ops go through here:

  - `matmul`: `keras.ops.matmul` returns float32 for float64 inputs on
    PyTorch; there it is an `einsum` (which keeps the dtype). Elsewhere it is
    `keras.ops.matmul`, whose TensorFlow kernel gives the same bits as the
    flows always had.
  - `cumsum` over the last axis and `maximum` with a scalar: float32 for
    float64 inputs on PyTorch; there they are an `einsum` with a triangle of
    ones and a `where`.
  - tanh: see `vib_flows.flows.functional.tanh` (JAX, PyTorch).
  - the Euclidean norm: `keras.ops.norm` returns float32 for float64 inputs
    on JAX and PyTorch; the flows write sqrt(sum(x^2)) instead.
"""

from typing import Any

import keras
from keras import ops


def matmul(x: Any, kernel: Any) -> Any:
  """Returns x [..., C] @ kernel [C, K]: [..., K] in the inputs' dtype."""
  if _is_torch():
    return ops.einsum("...c,ck->...k", x, kernel)
  return ops.matmul(x, kernel)


def _is_torch() -> bool:
  return keras.backend.backend() == "torch"


def cumsum(x: Any) -> Any:
  """Cumulative sum over the last axis, in x's dtype: [..., K] -> [..., K]."""
  if _is_torch():
    k = ops.shape(x)[-1]
    upper = ops.triu(ops.ones((k, k), x.dtype))  # upper[i, j] = 1 for i <= j.
    return ops.einsum("...i,ij->...j", x, upper)
  return ops.cumsum(x, axis=-1)


def maximum(x: Any, floor: float) -> Any:
  """max(x, floor) elementwise, in x's dtype."""
  if _is_torch():
    return ops.where(x > floor, x, ops.cast(floor, x.dtype))
  return ops.maximum(x, floor)
