"""Sylvester flows.

Van den Berg, Hasenclever, Tomczak & Welling 2018, "Sylvester Normalizing
Flows for Variational Inference", UAI.

    f(z) = z + Q R h(R~ Q^T z + b),                     h = tanh
    log|det df/dz| = sum_m log|1 + r_mm r~_mm h'(a_m)|,  a = R~ Q^T z + b

with Q [d, M] of orthonormal columns (Q^T Q = I_M), R and R~ [M, M] upper
triangular and b [M]. By Sylvester's determinant identity
det(I_d + Q R D R~ Q^T) = det(I_M + D R~ R) for D = diag(h'(a)), and D R~ R is
upper triangular with diagonal h'(a_m) r~_mm r_mm; the formula needs Q^T Q = I.

Invertibility (Theorem 2 of the paper): h' in (0, 1] and r_mm r~_mm > -1. In
coordinates u = Q^T z the map is then triangular, each output strictly
increasing in its own input, hence a bijection. The paper puts tanh on the
diagonals; tanh rounds to exactly +-1 in floating point (from |x| ~ 19 in
float64, ~ 9 in float32, ~ 4.6 in float16), where r_mm r~_mm = -1 and the
log-det is -inf at a = 0. So here

    r_mm = c tanh(raw_mm),   r~_mm = c tanh(raw~_mm),
    c = DIAGONAL_BOUND = 0.9995,

which gives r_mm r~_mm >= -0.999 > -1 for every raw value (also in float16),
and 1 + r_mm r~_mm h' >= 1e-3: each log-det term is finite, >= log(1e-3).

Three ways of making Q (one class each):

  sylvester_orthogonal (O-SNF): M = num_ortho_vectors <= d columns from the
    thin QR decomposition of a raw [d, M] matrix, signs fixed so that the
    triangular factor has a positive diagonal.
  sylvester_householder (H-SNF): M = d, Q = H_1 ... H_K, K = num_householder
    reflections H_k = I - 2 v_k v_k^T / ||v_k||^2.
  sylvester_triangular (T-SNF): M = d, Q = I; `flows.make_stack` puts a
    `Reverse` R between layers, so that every other layer computes
    R f R, i.e. Q = the reversal permutation, as in the paper: dependencies
    run both ways.

Global flows own Q (raw), R, R~ and b; amortized flows compute them per example
from the context (as the paper does), through `Flow.add_flow_parameter`, so the
same code serves both: with z [*L, d] and context [*Lc, C], Q [*Lc, d, M],
R, R~ [*Lc, M, M] and b [*Lc, M] are computed once per context row and act on
z by `...`-batched einsums; global flows' Q [d, M], R, R~ [M, M] have no
leading axes and act on all the points by one matrix product each
(`matvec`). Sylvester flows have no closed-form inverse.
"""

from typing import Any

import keras
from keras import ops
import numpy as np

from vib_flows.flows import backend
from vib_flows.flows import base
from vib_flows.flows import functional
from vib_flows.flows import registry

DIAGONAL_BOUND = 0.9995


def upper_triangular(raw: Any, m: int) -> Any:
  """R [..., M, M] from raw [..., M (M + 1) / 2]: diagonal c tanh(raw_mm).

  The packing of `tfp.math.fill_triangular(raw, upper=True)` (so that weights
  trained with it keep their meaning): the first M entries fill the first
  row, then the last entries reversed follow, row-major,

      matrix = concat([raw, reverse(raw[M:])]).reshape(M, M),

  of which the upper triangle is kept. The diagonal is DIAGONAL_BOUND * tanh
  of its raw entries, so |r_mm| < 1. Written with products by constant
  masks and a reshape, not a gather or a strided slice for the diagonal,
  which are slower on TensorFlow (docs/performance.md).
  """
  flat = ops.concatenate([raw, ops.flip(raw[..., m:], axis=-1)], axis=-1)
  matrix = base.split_last_axis(flat, (m, m))  # [..., M, M]
  diag = DIAGONAL_BOUND * functional.tanh(
      ops.diagonal(matrix, axis1=-2, axis2=-1))  # [..., M]
  strictly_upper = ops.convert_to_tensor(np.triu(np.ones((m, m)), k=1),
                                        dtype=flat.dtype)
  eye = ops.eye(m, dtype=flat.dtype)
  # Exact: each entry is x * 1 + 0 or 0 + c tanh(x_mm) * 1.
  return matrix * strictly_upper + diag[..., None, :] * eye


def matvec(matrix: Any, x: Any, transpose: bool = False) -> Any:
  """A x (or A^T x) at every point: [..., n] from x [..., k] (or [..., n]).

  Args:
    matrix: A [*La, n, k], one matrix per row of the leading axes La
      (amortized), or [n, k] for all points (global).
    x: [*Lx, k] points ([*Lx, n] if `transpose`); La and Lx broadcast.
    transpose: multiply by A^T instead.

  A global A is one matrix product over all the points, x A^T (or x A): a
  `...`-einsum would treat the points' axes as batch axes of a batched
  matrix-vector product (TensorFlow makes one product per point, and a
  [*Lx, n, k] gradient of A summed over Lx), several times slower.
  """
  if len(matrix.shape) == 2:
    return backend.matmul(x, matrix if transpose else ops.transpose(matrix))
  if transpose:
    return ops.einsum("...kn,...k->...n", matrix, x)
  return ops.einsum("...nk,...k->...n", matrix, x)


def householder_product(v: Any, dim: int) -> Any:
  """Q = H_1 ... H_K [..., d, d], H_k = I - 2 v_k v_k^T / ||v_k||^2.

  Args:
    v: [..., K, d] raw reflection vectors (any leading axes).
    dim: d.

  Returns:
    Q [..., d, d], orthogonal to rounding error, built by K rank-one updates
    of the identity, Q <- Q H_k = Q - 2 (Q v_k) v_k^T (unit v_k).
  """
  # Not ops.norm: it returns float32 for float64 inputs on JAX.
  v = v / ops.sqrt(ops.sum(ops.square(v), axis=-1, keepdims=True))
  v0 = v[..., 0, :]
  # H_1 = I - 2 v_1 v_1^T, [..., d, d] by broadcasting the identity.
  q = ops.eye(dim, dtype=v.dtype) - 2.0 * v0[..., :, None] * v0[..., None, :]
  for k in range(1, v.shape[-2]):  # K reflections, fixed at build time.
    vk = v[..., k, :]
    qv = ops.einsum("...ij,...j->...i", q, vk)
    q = q - 2.0 * qv[..., :, None] * vk[..., None, :]
  return q


class SylvesterFlow(base.Flow):
  """Common part of the Sylvester flows; see the module docstring.

  Subclasses define `num_vectors(dim)` (M), `build_q(dim)` (the weights of Q)
  and `orthogonal_from_parameters(params)` (Q from `flow_parameters`).

  Parameters (global, or amortized from the context): r [M (M + 1) / 2] and
  r_tilde [M (M + 1) / 2] (the upper triangles of R and R~, raw diagonals),
  b [M], plus those of Q.
  """

  def num_vectors(self, dim: int) -> int:
    """M, the number of columns of Q, for event size `dim`."""
    return dim

  def build_q(self, dim: int) -> None:
    """Creates the weights of Q (subclasses)."""
    del dim

  # True: Q = I (triangular Sylvester): forward skips the products with Q.
  q_is_identity = False

  def orthogonal_matrix(self, context: Any = None) -> Any:
    """Returns Q [*Lc, d, M] (amortized) or [d, M] (global).

    Orthonormal columns.
    """
    return self.orthogonal_from_parameters(self.flow_parameters(context))

  def orthogonal_from_parameters(self, params: dict[str, Any]) -> Any:
    """Q from `flow_parameters` (subclasses)."""
    raise NotImplementedError

  def build_flow(self, dim: int) -> None:
    m = self.num_vectors(dim)
    self.build_q(dim)
    triangle = keras.initializers.RandomNormal(stddev=0.1)
    self.add_flow_parameter("r", (m * (m + 1) // 2,), triangle)
    self.add_flow_parameter("r_tilde", (m * (m + 1) // 2,), triangle)
    self.add_flow_parameter("b", (m,), "zeros")

  def triangular_matrices(self, context: Any = None) -> tuple[Any, Any, Any]:
    """Returns R, R~ (upper triangular) and b.

    Shapes [*Lc, M, M], [*Lc, M, M], [*Lc, M] (amortized, context
    [*Lc, C]); [M, M], [M, M], [M] (global). The diagonals are
    DIAGONAL_BOUND * tanh(raw), so r_mm r~_mm > -1.
    """
    return self.triangular_from_parameters(self.flow_parameters(context))

  def triangular_from_parameters(self, params: dict[str, Any]
                                 ) -> tuple[Any, Any, Any]:
    """(R, R~, b) from `flow_parameters`, see `triangular_matrices`."""
    m = params["b"].shape[-1]
    return (upper_triangular(params["r"], m),
            upper_triangular(params["r_tilde"], m), params["b"])

  def forward_and_log_det(self, z: Any, context: Any) -> tuple[Any, Any]:
    params = self.flow_parameters(context)
    r, r_tilde, b = self.triangular_from_parameters(params)
    # z [*L, d]; Q [*Lc, d, M], R, R~ [*Lc, M, M] (or no leading axes)
    # broadcast over the leading axes.
    if self.q_is_identity:
      qt_z = z
    else:
      q = self.orthogonal_from_parameters(params)
      qt_z = matvec(q, z, transpose=True)
    a = matvec(r_tilde, qt_z) + b
    h = functional.tanh(a)
    r_h = matvec(r, h)
    y = z + (r_h if self.q_is_identity else matvec(q, r_h))
    diag = (ops.diagonal(r, axis1=-2, axis2=-1)
            * ops.diagonal(r_tilde, axis1=-2, axis2=-1))
    h_prime = 1.0 - ops.square(h)
    return y, self.sum_log_det(ops.log1p(h_prime * diag))


@registry.register("sylvester_orthogonal")
class OrthogonalSylvesterFlow(SylvesterFlow):
  """Orthogonal Sylvester flow (O-SNF; van den Berg et al. 2018).

  Q [d, M] from a raw [d, M] matrix.

  f(z) = z + Q R tanh(R~ Q^T z + b); log|det df/dz| =
  sum_m log|1 + r_mm r~_mm h'(a_m)| (module docstring).

  Q is the Q factor of the thin QR decomposition of the raw matrix (batched for
  amortized flows), with the column signs chosen so that the R factor has a
  positive diagonal: the unique such factorization, a smooth function of the
  raw matrix wherever it has full column rank (LAPACK's own signs flip with the
  raw entries, which would make the flow jump during training).

  Why QR and not the paper's Bjorck iteration Q <- Q (I + (I - Q^T Q) / 2):
  QR is orthonormal to rounding error (Q^T Q = I to ~1e-15 in float64) for any
  raw matrix, in one step, and QR (`keras.ops.qr`) has a gradient for d >= M;
  Bjorck converges only from ||Q|| < sqrt(3), slowly for small singular values,
  so a bounded number of steps can stop short of the Q^T Q = I the log-det
  formula needs. Under mixed precision QR runs in float32, as all flow maths.

  Args:
    num_ortho_vectors: M, the number of orthonormal columns, 1 <= M <= d
      (default d).
    dim, context_dim, amortized, **kwargs: see `Flow`.

  Raises:
    ValueError: num_ortho_vectors < 1 or > d.
  """

  def __init__(self, num_ortho_vectors: int | None = None, **kwargs: Any):
    if num_ortho_vectors is not None and int(num_ortho_vectors) < 1:
      raise ValueError(
          "sylvester_orthogonal: num_ortho_vectors must be >= 1 (or None for "
          f"d), got {num_ortho_vectors}."
      )
    self.num_ortho_vectors = (
        None if num_ortho_vectors is None else int(num_ortho_vectors)
    )
    super().__init__(**kwargs)

  def num_vectors(self, dim: int) -> int:
    m = dim if self.num_ortho_vectors is None else self.num_ortho_vectors
    if m > dim:
      raise ValueError(
          f"sylvester_orthogonal: num_ortho_vectors={m} is larger than the "
          f"event size d={dim}; Q [d, M] cannot have more than d orthonormal "
          "columns."
      )
    return m

  def build_q(self, dim: int) -> None:
    self.add_flow_parameter(
        "q", (dim, self.num_vectors(dim)),
        keras.initializers.RandomNormal(stddev=1.0),
    )

  def orthogonal_from_parameters(self, params: dict[str, Any]) -> Any:
    q, r = ops.qr(params["q"], mode="reduced")  # [..., d, M], [..., M, M]
    diag = ops.diagonal(r, axis1=-2, axis2=-1)
    signs = ops.where(diag < 0, -ops.ones_like(diag), ops.ones_like(diag))
    return q * signs[..., None, :]

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(num_ortho_vectors=self.num_ortho_vectors)
    return config


@registry.register("sylvester_householder")
class HouseholderSylvesterFlow(SylvesterFlow):
  """Householder Sylvester flow (H-SNF; van den Berg et al. 2018).

  Q = H_1 ... H_K, M = d.

  f(z) = z + Q R tanh(R~ Q^T z + b); log|det df/dz| =
  sum_m log|1 + r_mm r~_mm h'(a_m)| (module docstring).

  H_k = I - 2 v_k v_k^T / ||v_k||^2 with raw vectors v [K, d]; the product is
  orthogonal to rounding error. Q is built by K rank-one updates of the
  identity (`householder_product`: a bounded loop over reflections,
  vectorized over the leading axes).

  Args:
    num_householder: K >= 1, the number of reflections (default 4).
    dim, context_dim, amortized, **kwargs: see `Flow`.
  """

  def __init__(self, num_householder: int = 4, **kwargs: Any):
    if int(num_householder) < 1:
      raise ValueError(
          "sylvester_householder: num_householder must be >= 1, got "
          f"{num_householder}."
      )
    self.num_householder = int(num_householder)
    super().__init__(**kwargs)

  def build_q(self, dim: int) -> None:
    self.add_flow_parameter(
        "v", (self.num_householder, dim),
        keras.initializers.RandomNormal(stddev=1.0),
    )

  def orthogonal_from_parameters(self, params: dict[str, Any]) -> Any:
    return householder_product(params["v"], self.event_size)  # [..., d, d]

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(num_householder=self.num_householder)
    return config


@registry.register("sylvester_triangular")
class TriangularSylvesterFlow(SylvesterFlow):
  """Triangular Sylvester flow (T-SNF; van den Berg et al. 2018): Q = I, M = d.

  f(z) = z + R h(R~ z + b): output i depends on inputs j >= i only, log-det
  sum_m log|1 + r_mm r~_mm h'(a_m)|. With `Reverse` layers around it (placed
  by `flows.make_stack` between layers) it is the paper's T-SNF with Q the
  reversal permutation, since R_P f R_P (z) = z + P R h(R~ P z + b).

  Args:
    dim, context_dim, amortized, **kwargs: see `Flow`.
  """

  needs_permutation = True

  q_is_identity = True

  def orthogonal_from_parameters(self, params: dict[str, Any]) -> Any:
    del params
    return ops.eye(self.event_size, dtype=self.math_dtype)  # [d, d]
