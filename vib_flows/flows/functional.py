"""Elementwise maths shared by the flows: bounded log-scales, the RQ spline.

bounded_log_scale(raw, B) = B tanh(raw / B): about raw near 0, always within
(-B, B), so that no weight makes exp(log-scale) overflow (MAF, Real NVP, the
spline's knot slopes).

rational_quadratic_spline: the monotone rational-quadratic spline of Durkan et
al. 2019 ("Neural Spline Flows", Eqs. 4-6 and Appendix A) on [-bound, bound],
the identity outside, with its exact log-derivative; see the function. It is
written here rather than taken from `tfp.bijectors.RationalQuadraticSpline`
(same maths), whose graph took ~3 s to trace per layer with its gradient.
Both run in the dtype of their inputs (float32 under mixed precision, see
`Flow.math_dtype`).
"""

import tensorflow as tf


def bounded_log_scale(raw: tf.Tensor, bound: float) -> tf.Tensor:
  """Soft clamp `bound * tanh(raw / bound)`.

  About `raw` near 0, always within (-bound, bound).
  """
  return bound * tf.tanh(raw / bound)


def rational_quadratic_spline(x: tf.Tensor, widths: tf.Tensor,
                              heights: tf.Tensor, slopes: tf.Tensor,
                              bound: float, inverse: bool = False
                              ) -> tuple[tf.Tensor, tf.Tensor]:
  """Monotone rational-quadratic spline on [-bound, bound], identity outside.

  Args:
    x: [...] points (the inputs, or the outputs if `inverse`).
    widths: [..., K] positive bin widths (x side), summing to 2 * bound.
    heights: [..., K] positive bin heights (y side), summing to 2 * bound.
    slopes: [..., K - 1] positive derivatives at the interior knots.
    bound: the spline maps [-bound, bound] onto itself.
    inverse: evaluate the inverse instead.

  Returns:
    (tau(x) or tau^-1(x), log tau' at the input-side point), both shaped like x.
  """
  dtype = x.dtype
  ones = tf.ones_like(slopes[..., :1])
  slopes = tf.concat([ones, slopes, ones], axis=-1)  # Unit slopes at the ends.

  def knots(sizes):  # [..., K + 1], exactly -bound and bound at the ends.
    inner = -bound + tf.cumsum(sizes[..., :-1], axis=-1)
    return tf.concat([-bound * ones, inner, bound * ones], axis=-1)

  x_knots, y_knots = knots(widths), knots(heights)
  search = y_knots if inverse else x_knots
  inside = (x > -bound) & (x < bound)
  x_in = tf.where(inside, x, tf.zeros_like(x))  # Finite gradients outside.
  bin_index = tf.reduce_sum(
      tf.cast(x_in[..., None] >= search[..., 1:-1], tf.int32), axis=-1)
  onehot = tf.one_hot(bin_index, widths.shape[-1], dtype=dtype)

  def pick(t):  # The value of bin k (or of its left knot) for every point.
    return tf.reduce_sum(onehot * t[..., :widths.shape[-1]], axis=-1)

  x_k, y_k, d_k = pick(x_knots), pick(y_knots), pick(slopes)
  d_k1 = pick(slopes[..., 1:])
  w = pick(x_knots[..., 1:]) - x_k
  h = pick(y_knots[..., 1:]) - y_k
  s = h / w
  c = d_k1 + d_k - 2 * s
  if inverse:
    dy = x_in - y_k
    a = h * (s - d_k) + dy * c
    b = h * d_k - dy * c
    q = -s * dy
    xi = 2 * q / (-b - tf.sqrt(tf.maximum(b * b - 4 * a * q, 0)))
    out = x_k + xi * w
  else:
    xi = (x_in - x_k) / w
  xi_1 = xi * (1 - xi)
  denominator = s + c * xi_1
  if not inverse:
    out = y_k + h * (s * xi * xi + d_k * xi_1) / denominator
  log_derivative = (
      2 * tf.math.log(s)
      + tf.math.log(d_k1 * xi * xi + 2 * s * xi_1 + d_k * (1 - xi) ** 2)
      - 2 * tf.math.log(denominator))
  return (tf.where(inside, out, x),
          tf.where(inside, log_derivative, tf.zeros_like(x)))
