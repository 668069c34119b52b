"""Elementwise maths shared by the flows: bounded log-scales, the RQ spline.

bounded_log_scale(raw, B) = B tanh(raw / B): about raw near 0, always within
(-B, B), so that no weight makes exp(log-scale) overflow (MAF, Real NVP, the
spline's knot slopes).

rational_quadratic_spline: the monotone rational-quadratic spline of Durkan et
al. 2019 ("Neural Spline Flows", Eqs. 4-6 and Appendix A) on [-bound, bound],
the identity outside, with its exact log-derivative; see the function. It is
written here rather than taken from `tfp.bijectors.RationalQuadraticSpline`
(same maths), whose graph is slow to trace (docs/performance.md), and so that
it runs on every Keras backend: it is written with `keras.ops` only, with no
data-dependent shapes (it runs under `jax.jit`).

Both run in the dtype of their inputs (float32 under mixed precision, see
`Flow.math_dtype`), float64 included on every backend (`tanh`).
"""

from typing import Any

import keras
from keras import ops

from vib_flows.flows import backend


def tanh(x: Any) -> Any:
  """The hyperbolic tangent in the dtype of x, on every Keras backend.

  `keras.ops.tanh` computes float64 inputs in float32 on JAX and PyTorch
  (Keras's dtype rules drop 64-bit floats there: its result is float32, with
  errors of ~1e-8). When that happens this computes it from `expm1`, which
  keeps the dtype: tanh|x| = -t / (2 + t) with t = expm1(-2|x|), accurate to a
  few ulps relative (`tanh_from_expm1`).
  """
  y = ops.tanh(x)
  if (keras.backend.standardize_dtype(y.dtype)
      == keras.backend.standardize_dtype(x.dtype)):
    return y
  return tanh_from_expm1(x)


def tanh_from_expm1(x: Any) -> Any:
  """Returns tanh(x) = sign(x) * -t / (2 + t), t = expm1(-2|x|) in (-1, 0]."""
  t = ops.expm1(-2 * ops.abs(x))
  magnitude = -t / (2 + t)
  return ops.where(x < 0, -magnitude, magnitude)


def bounded_log_scale(raw: Any, bound: float) -> Any:
  """Soft clamp `bound * tanh(raw / bound)`.

  About `raw` near 0, always within (-bound, bound).
  """
  return bound * tanh(raw / bound)


def rational_quadratic_spline(x: Any, widths: Any, heights: Any, slopes: Any,
                              bound: float, inverse: bool = False
                              ) -> tuple[Any, Any]:
  """Monotone rational-quadratic spline on [-bound, bound], identity outside.

  In bin k, with knots (x_k, y_k) and (x_{k+1}, y_{k+1}), width
  w = x_{k+1} - x_k, height h = y_{k+1} - y_k, s = h / w, knot slopes d_k,
  d_{k+1} and xi = (x - x_k) / w in [0, 1) (Durkan et al. 2019, Eqs. 4-6):

      tau(x) = y_k + h (s xi^2 + d_k xi (1 - xi)) / (s + c xi (1 - xi)),
      tau'(x) = s^2 (d_{k+1} xi^2 + 2 s xi (1 - xi) + d_k (1 - xi)^2)
                / (s + c xi (1 - xi))^2,        c = d_{k+1} + d_k - 2 s;

  the inverse solves a xi^2 + b xi + q = 0 (Appendix A) with the root
  xi = 2 q / (-b - sqrt(b^2 - 4 a q)), stable in floating point.

  The bin of a point is found by counting, with no search op and no
  data-dependent shape: k = #{interior knots <= x}, clipped to 0..K-1, so a
  point exactly on a knot belongs to the bin on its right (xi = 0); the bin's
  knot values are then read with one `take_along_axis`. Every point is
  evaluated (points outside the bound at 0, which keeps the unused branch and
  its gradient finite), and `where` selects the identity outside
  (-bound, bound), with log-derivative 0 there.

  The leading axes of x and of the spline parameters broadcast against each
  other (NumPy rules).

  Args:
    x: [...] points (the inputs, or the outputs if `inverse`).
    widths: [..., K] positive bin widths (x side), summing to 2 * bound; the
      three parameter tensors share their leading shape.
    heights: [..., K] positive bin heights (y side), summing to 2 * bound.
    slopes: [..., K - 1] positive derivatives at the interior knots.
    bound: the spline maps [-bound, bound] onto itself.
    inverse: evaluate the inverse instead.

  Returns:
    (tau(x) or tau^-1(x), log tau' at the input-side point), both with the
    broadcast leading shape of x and of the parameters.
  """
  num_bins = widths.shape[-1]
  ones = ops.ones_like(slopes[..., :1])
  slopes = ops.concatenate([ones, slopes, ones], axis=-1)  # Unit end slopes.

  def knots(sizes):  # [..., K + 1], exactly -bound and bound at the ends.
    inner = -bound + backend.cumsum(sizes[..., :-1])
    return ops.concatenate([-bound * ones, inner, bound * ones], axis=-1)

  x_knots, y_knots = knots(widths), knots(heights)
  search = y_knots if inverse else x_knots
  inside = ops.logical_and(x > -bound, x < bound)
  x_in = ops.where(inside, x, ops.zeros_like(x))  # Finite gradients outside.
  count = ops.sum(
      ops.cast(x_in[..., None] >= search[..., 1:-1], "int32"), axis=-1)
  bin_index = ops.clip(count, 0, num_bins - 1)

  # One gather of the bin's two knots in the three tables: [..., 3, 2].
  tables = ops.stack([x_knots, y_knots, slopes], axis=-2)  # [..., 3, K + 1]
  pair = ops.stack([bin_index, bin_index + 1], axis=-1)[..., None, :]
  for _ in range(len(pair.shape) - len(tables.shape)):
    tables = ops.expand_dims(tables, 0)  # Equal ranks; size-1 axes broadcast.
  knot = ops.take_along_axis(tables, pair, axis=-1)
  x_k, x_k1 = knot[..., 0, 0], knot[..., 0, 1]
  y_k, y_k1 = knot[..., 1, 0], knot[..., 1, 1]
  d_k, d_k1 = knot[..., 2, 0], knot[..., 2, 1]
  w = x_k1 - x_k
  h = y_k1 - y_k
  s = h / w
  c = d_k1 + d_k - 2 * s
  if inverse:
    dy = x_in - y_k
    a = h * (s - d_k) + dy * c
    b = h * d_k - dy * c
    q = -s * dy
    xi = 2 * q / (-b - ops.sqrt(backend.maximum(b * b - 4 * a * q, 0.0)))
    out = x_k + xi * w
  else:
    xi = (x_in - x_k) / w
  xi_1 = xi * (1 - xi)
  denominator = s + c * xi_1
  if not inverse:
    out = y_k + h * (s * xi * xi + d_k * xi_1) / denominator
  log_derivative = (
      2 * ops.log(s)
      + ops.log(d_k1 * xi * xi + 2 * s * xi_1 + d_k * (1 - xi) ** 2)
      - 2 * ops.log(denominator))
  return (ops.where(inside, out, x),
          ops.where(inside, log_derivative, ops.zeros_like(x)))
