"""The few places where one Keras backend needs its own code in the flows.

Everything else in `vib_flows.flows` is plain `keras.ops`. Keras's dtype
rules compute some 64-bit ops in 32 bits on some backends (float64 in,
float32 out); the flows must keep float64 (their log-dets are tested against
float64 autodiff Jacobians on every backend), so those ops go through here:

  - `matmul`: `keras.ops.matmul` returns float32 for float64 inputs on
    PyTorch; there it is an `einsum` (which keeps the dtype). Elsewhere it is
    `keras.ops.matmul`, whose TensorFlow kernel gives the same bits as the
    flows always had.
  - tanh: see `vib_flows.flows.functional.tanh` (JAX, PyTorch).
  - the Euclidean norm: `keras.ops.norm` returns float32 for float64 inputs
    on JAX and PyTorch; the flows write sqrt(sum(x^2)) instead.
"""

from typing import Any

import keras
from keras import ops


def matmul(x: Any, kernel: Any) -> Any:
  """Returns x [..., C] @ kernel [C, K]: [..., K] in the inputs' dtype."""
  if keras.backend.backend() == "torch":
    return ops.einsum("...c,ck->...k", x, kernel)
  return ops.matmul(x, kernel)
