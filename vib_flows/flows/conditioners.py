"""The conditioner network shared by the autoregressive and coupling flows.

An ELU MLP from x [..., n_in] (and a context [..., C]) to
params [..., n_out, P], with L hidden layers of H units:

    h_0 = x,     h_k = elu(h_{k-1} @ (W_k * M_k) + b_k + context @ V_k),
    params = reshape(h_L @ (W_out * M_out) + b_out, [..., n_out, P])

The leading axes of x and of the context broadcast against each other (NumPy
rules) and params has their broadcast leading shape. Each context term
context @ V_k is computed once on the context's own leading shape and
broadcast-added: with x [S, B, n_in] and context [B, C] the context passes
through its kernels B times, not S * B times.

The masks M_k, M_out are optional fixed binary numpy constants (not weights):
MADE (autoregressive.py) passes its degree masks, a coupling conditioner
(coupling.py) none, i.e. all ones. The context feeds every hidden layer without
a mask. With n_in = 0 there is no [0, H] kernel: the first hidden layer is
bias (+ context) only, so without a context the output is a learned constant
broadcast over x's leading axes. The output layer is zero-initialized, so all
params start at 0.
"""

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops
import numpy as np

from vib_flows.flows import backend


@keras.saving.register_keras_serializable(package="vib_flows")
class ConditionerMLP(keras.layers.Layer):
  """Optionally masked MLP `params = net(x, context=None)`.

  Maps x [..., n_in] (and context [..., C]) to params [..., n_out, P].

  See the module docstring. The caller checks that a context is given when
  `context_dim` is set.

  Args:
    input_dim: n_in (may be 0).
    output_dim: n_out.
    num_params: P, the number of parameters per output.
    hidden_units: H, the width of every hidden layer.
    num_hidden_layers: L (>= 1).
    context_dim: C; with it, the context feeds every hidden layer (unmasked).
    masks: None, or L binary arrays, the k-th [fan_in_k, H] (fan_in_0 = n_in,
      then H), multiplied into the hidden kernels.
    output_mask: None, or a binary [H, n_out * P] array for the output kernel
      (column i * P + p: parameter p of output i).
    **kwargs: passed to `keras.layers.Layer`.
  """

  def __init__(self, input_dim: int, output_dim: int, num_params: int,
               hidden_units: int, num_hidden_layers: int,
               context_dim: int | None = None,
               masks: Sequence[np.ndarray] | None = None,
               output_mask: np.ndarray | None = None, **kwargs: Any):
    super().__init__(**kwargs)
    self.input_dim = int(input_dim)
    self.output_dim = int(output_dim)
    self.num_params = int(num_params)
    self.hidden_units = int(hidden_units)
    self.num_hidden_layers = int(num_hidden_layers)
    self.context_dim = None if context_dim is None else int(context_dim)
    self.masks: list[np.ndarray | None]
    if masks is None:
      self.masks = [None] * self.num_hidden_layers
    else:
      self.masks = [np.asarray(m, np.float32) for m in masks]
      if len(self.masks) != self.num_hidden_layers:
        raise ValueError(f"Expected {self.num_hidden_layers} masks, got "
                         f"{len(self.masks)}.")
    self.output_mask: np.ndarray | None = (None if output_mask is None
                        else np.asarray(output_mask, np.float32))

  def build(self, input_shape: Sequence[int | None] | None = None) -> None:
    del input_shape
    self.kernels, self.biases, self.context_kernels = [], [], []
    fan_in = self.input_dim
    for k in range(self.num_hidden_layers):
      # No [0, H] kernel for an empty input: the layer is bias (+ context).
      self.kernels.append(None if fan_in == 0 else self.add_weight(
          name=f"kernel_{k}", shape=(fan_in, self.hidden_units),
          initializer="glorot_uniform"))
      self.biases.append(self.add_weight(
          name=f"bias_{k}", shape=(self.hidden_units,), initializer="zeros"))
      if self.context_dim:
        self.context_kernels.append(self.add_weight(
            name=f"context_kernel_{k}",
            shape=(self.context_dim, self.hidden_units),
            initializer="glorot_uniform"))
      fan_in = self.hidden_units
    width = self.output_dim * self.num_params
    self.output_kernel = self.add_weight(
        name="output_kernel", shape=(self.hidden_units, width),
        initializer="zeros")
    self.output_bias = self.add_weight(
        name="output_bias", shape=(width,), initializer="zeros")

  @staticmethod
  def _masked(kernel: Any, mask: np.ndarray | None, dtype: str) -> Any:
    kernel = ops.cast(kernel, dtype)
    return kernel if mask is None else kernel * ops.convert_to_tensor(
        mask, dtype)

  def call(self, x: Any, context: Any = None) -> Any:
    """Returns params [..., n_out, P]: x's and context's leading axes."""
    dtype = self.compute_dtype
    h = ops.cast(x, dtype)
    if self.context_dim:
      context = ops.cast(context, dtype)
    for k in range(self.num_hidden_layers):
      bias = ops.cast(self.biases[k], dtype)
      if self.kernels[k] is None:
        # x [..., 0] times an empty [0, H] kernel: zeros [..., H], which keep
        # x's leading axes.
        pre = backend.matmul(h, ops.zeros((0, self.hidden_units), dtype)) + bias
      else:
        pre = backend.matmul(
            h, self._masked(self.kernels[k], self.masks[k], dtype))
        pre = pre + bias
      if self.context_dim:
        # On the context's own leading shape, broadcast over x's.
        kernel = ops.cast(self.context_kernels[k], dtype)
        pre = pre + backend.matmul(context, kernel)
      h = ops.elu(pre)
    out = backend.matmul(
        h, self._masked(self.output_kernel, self.output_mask, dtype))
    out = out + ops.cast(self.output_bias, dtype)
    return ops.reshape(
        out, (*ops.shape(out)[:-1], self.output_dim, self.num_params))

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(
        input_dim=self.input_dim, output_dim=self.output_dim,
        num_params=self.num_params, hidden_units=self.hidden_units,
        num_hidden_layers=self.num_hidden_layers, context_dim=self.context_dim,
        masks=(None if all(m is None for m in self.masks)
               else [None if m is None else m.tolist() for m in self.masks]),
        output_mask=(None if self.output_mask is None
                     else self.output_mask.tolist()))
    return config
