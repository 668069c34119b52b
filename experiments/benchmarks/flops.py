"""The FLOP model of a training step: its matrix products (GEMMs).

Convention: a product [M, K] x [K, N] costs M K N multiply-adds, counted as
2 M K N floating-point operations (FLOPs). A dense layer y = x W + b with x
[B, n] and W [n, m] costs, in a training step,

    forward        y  = x W           [B, n] x [n, m]     2 B n m FLOPs
    weight grad    dW = x^T dy        [n, B] x [B, m]     2 B n m
    input grad     dx = dy W^T        [B, m] x [m, n]     2 B n m

i.e. 6 B n m FLOPs, except for a layer whose input is the data (the
encoder's first layer): nothing needs dx there, so neither the hand-written
steps nor XLA nor TensorFlow's graph pruning compute it (4 B n m). The
element-wise work (activations, the loss, the optimizer's update, the
noise), the flows' per-example products (a Sylvester flow's batched Q^T z,
R~ u, R h, Q r and its per-example QR) and the reductions are not GEMMs and
are not counted: the count is what the machine's GEMM throughput bounds.

`Gemm` records each product as TensorFlow's MatMul kernel sees it (the
operand shapes and transpose flags of the forward and of the two gradient
products), so `experiments.benchmarks.gemm` can time exactly those
products alone: the roofline of the step.
"""

import collections

# One product op(a) x op(b): a [rows_a, cols_a] (transposed when
# transpose_a), giving [m, n] with inner size k.
Gemm = collections.namedtuple(
    "Gemm", ["m", "k", "n", "transpose_a", "transpose_b"])


def gemm_flops(g):
  """2 m k n: the FLOPs of one product."""
  return 2 * g.m * g.k * g.n


def total_flops(gemms):
  """Sum of the FLOPs of the products."""
  return sum(gemm_flops(g) for g in gemms)


def operand_shapes(g):
  """Shapes of the two operands as passed to matmul (before transposing)."""
  a = (g.k, g.m) if g.transpose_a else (g.m, g.k)
  b = (g.n, g.k) if g.transpose_b else (g.k, g.n)
  return a, b


def dense_forward(rows, n_in, n_out):
  """The forward product of a dense layer: [rows, n_in] x [n_in, n_out]."""
  return Gemm(rows, n_in, n_out, False, False)


def dense_step(rows, n_in, n_out, input_grad=True):
  """Forward, weight-gradient and (unless not needed) input-gradient GEMMs.

  Args:
    rows: B, rows of the layer's input.
    n_in: the kernel's rows.
    n_out: the kernel's columns.
    input_grad: whether the step needs dx (False for a layer on the data).
  """
  gemms = [dense_forward(rows, n_in, n_out),
           Gemm(n_in, rows, n_out, True, False)]   # dW = x^T dy.
  if input_grad:
    gemms.append(Gemm(rows, n_out, n_in, False, True))  # dx = dy W^T.
  return gemms


def step_gemms(layers, rows, data_layers=1):
  """The GEMMs of a training step of dense `layers` on a batch of `rows`.

  Args:
    layers: [(name, n_in, n_out)] (e.g. `handwritten_spec.Spec.dense_layers`).
    rows: the batch size B.
    data_layers: how many leading layers read the data (no input gradient).
  """
  gemms = []
  for i, (_, n_in, n_out) in enumerate(layers):
    gemms += dense_step(rows, n_in, n_out, input_grad=i >= data_layers)
  return gemms


def forward_gemms(widths, rows):
  """Forward products of an MLP of `widths` (e.g. [40, 400, 784]) on rows."""
  return [dense_forward(rows, a, b) for a, b in zip(widths, widths[1:])]
