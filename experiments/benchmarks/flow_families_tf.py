"""The flow families written by hand in plain TensorFlow (no vib_flows code).

Global (not amortized) flows of z [B, d], each returning
(z' [B, d], log|det dz'/dz| [B]); the weights are a dict name -> tensor per
layer (tf.Variables in the benchmark), in the layout of `hand_layout`. No
TFP bijectors: tf.linalg and tf.math ops, following the papers.

Conditioners: an ELU MLP with two hidden layers of H units,

    h1 = elu(x W0 + b0),  h2 = elu(h1 W1 + b1),  out = h2 Wo + bo,

with, for MADE (Germain et al. 2015), each kernel multiplied by a fixed binary
mask (`made_masks`): inputs have degrees 1..d, hidden units floor(k d / H)
in 0..d-1; a hidden unit sees the units below of degree <= its own, output i
the last hidden units of degree < i, so output i depends on x_{<i} only. The
two MADE outputs per dimension are the contiguous halves [mu | s] of `out`.

  MAF (Papamakarios et al. 2017), density direction (one MADE pass):
      (mu, s) = MADE(y),  alpha = 3 tanh(s / 3),
      z = (y - mu) exp(-alpha),  log|det dz/dy| = -sum_i alpha_i
  IAF (Kingma et al. 2016, the gated update of their Algorithm 1):
      (m, s) = MADE(z),  g = -3 + softplus(s + 2 + 3),
      z' = m + sigmoid(g) (z - m),  log|det| = sum_i log sigmoid(g_i)
  Real NVP (Dinh et al. 2017), affine coupling, z = [z_A, z_B] with z_B the
  last ceil(d / 2) coordinates: (t, s) = MLP(z_A), s <- 3 tanh(s / 3),
      z'_B = z_B exp(s) + t,  log|det| = sum_B s
  Rational-quadratic spline coupling (Durkan et al. 2019, Eqs. 4-6): the
  same split; MLP(z_A) gives per coordinate K width, K height and K - 1
  interior-slope logits (`rq_spline`).
  Sylvester (van den Berg et al. 2018):
      z' = z + Q R tanh(R~ Q^T z + b),
      log|det| = sum_m log|1 + r_mm r~_mm (1 - tanh^2(a_m))|,
  R, R~ upper triangular with diagonals 0.9995 tanh(raw) (so that
  r_mm r~_mm > -1), packed as TFP's fill_triangular(upper=True) packs them;
  Q the thin QR factor of a raw [d, M] matrix with column signs making the
  R factor's diagonal positive (orthogonal), H_1 ... H_K with
  H_k = I - 2 v_k v_k^T / |v_k|^2 (Householder), or I (triangular).

A stack of L layers (`stack`) reverses the coordinates between the layers
of the families that condition on an order (MADE, coupling, triangular
Sylvester), and after the last one too when L is even, as the package's
`flows.make_stack` does; MAF runs its layers backwards (the inverse of the
sampling stack).
"""

import numpy as np
import tensorflow as tf

# Families whose layers condition on a coordinate order (`reversals`).
ORDERED = ("maf", "iaf", "real_nvp", "spline", "sylvester_triangular")
MAX_LOG_SCALE = 3.0  # MAF, Real NVP, the spline's slopes: 3 tanh(s / 3).
IAF_FORGET_BIAS = 2.0
IAF_GATE_FLOOR = -3.0
SPLINE_MIN_BIN_FRACTION = 0.1
DIAGONAL_BOUND = 0.9995


# ------------------------------------------------------------------ weights
def made_masks(dim, hidden_units):
  """MADE's masks [d, H], [H, H], [H, 2 d] (float32 arrays).

  The output's for the halves [mu | s], each output i masked alike.
  """
  degrees = np.arange(1, dim + 1)
  hidden = (np.arange(hidden_units) * dim) // hidden_units
  first = degrees[:, None] <= hidden[None, :]
  second = hidden[:, None] <= hidden[None, :]
  output = np.tile(hidden[:, None] < degrees[None, :], (1, 2))
  return tuple(m.astype(np.float32) for m in (first, second, output))


def hand_layout(case, weights):
  """One package layer's weights (short name -> array) in this layout.

  The conditioners' output columns are interleaved by the package (column
  i P + p: parameter p of output i); for MADE they become the halves
  [mu_1..mu_d | s_1..s_d]. Every other weight keeps its shape. The mapping
  is a permutation, so it also maps the loss gradients.

  Args:
    case: a family (`flow_families.CASES`).
    weights: {"kernel_0", "bias_0", "kernel_1", "bias_1", "output_kernel",
      "output_bias"} (MADE, coupling) or {"q" | "v", "r", "r_tilde", "b"}
      (Sylvester).
  """
  out = {k: np.asarray(v) for k, v in weights.items()}
  if case in ("maf", "iaf"):
    for name in ("output_kernel", "output_bias"):
      w = out[name]
      out[name] = np.concatenate([w[..., 0::2], w[..., 1::2]], axis=-1)
  return out


# ------------------------------------------------------------- conditioners
def mlp(p, x, masks=None):
  """The ELU MLP: x [B, n] -> [B, n_out] (masked kernels for MADE)."""
  if masks is None:
    masks = (None, None, None)

  def kernel(name, mask):
    w = p[name]
    return w if mask is None else w * tf.constant(mask, w.dtype)

  h = x
  for k in range(2):
    h = tf.nn.elu(tf.matmul(h, kernel(f"kernel_{k}", masks[k]))
                  + p[f"bias_{k}"])
  return tf.matmul(h, kernel("output_kernel", masks[2])) + p["output_bias"]


def made(p, x):
  """MADE of z [B, d]: (first, second) [B, d] each, output i from x_{<i}."""
  d = x.shape[-1]
  out = mlp(p, x, made_masks(d, p["kernel_1"].shape[0]))
  return out[:, :d], out[:, d:]


def bounded(raw, bound=MAX_LOG_SCALE):
  """The soft clamp bound tanh(raw / bound): within (-bound, bound)."""
  return bound * tf.tanh(raw / bound)


# ------------------------------------------------------------------- layers
def maf_inverse(p, y):
  """MAF's density direction: (z [B, d], log|det dz/dy| [B])."""
  mu, raw = made(p, y)
  alpha = bounded(raw)
  return (y - mu) * tf.exp(-alpha), -tf.reduce_sum(alpha, -1)


def iaf(p, z):
  """IAF, gated: (z' [B, d], log|det| [B])."""
  m, s = made(p, z)
  gate = IAF_GATE_FLOOR + tf.nn.softplus(s + IAF_FORGET_BIAS - IAF_GATE_FLOOR)
  y = m + tf.sigmoid(gate) * (z - m)
  return y, tf.reduce_sum(tf.math.log_sigmoid(gate), -1)


def coupling_split(z):
  """(z_A [B, d - n_B], z_B [B, n_B]), n_B = ceil(d / 2), z_B last."""
  n_a = z.shape[-1] // 2
  return z[:, :n_a], z[:, n_a:]


def real_nvp(p, z):
  """Affine coupling: (z' [B, d], log|det| [B])."""
  z_a, z_b = coupling_split(z)
  theta = tf.reshape(mlp(p, z_a), [-1, z_b.shape[-1], 2])
  log_scale = bounded(theta[..., 1])
  y_b = z_b * tf.exp(log_scale) + theta[..., 0]
  return tf.concat([z_a, y_b], -1), tf.reduce_sum(log_scale, -1)


def spline(p, z, num_bins, bound):
  """Rational-quadratic spline coupling: (z' [B, d], log|det| [B])."""
  z_a, z_b = coupling_split(z)
  k = num_bins
  theta = tf.reshape(mlp(p, z_a), [-1, z_b.shape[-1], 3 * k - 1])
  y_b, log_derivative = rq_spline(z_b, theta[..., :k], theta[..., k:2 * k],
                                  theta[..., 2 * k:], bound)
  return tf.concat([z_a, y_b], -1), tf.reduce_sum(log_derivative, -1)


def _knots(raw, bound):
  """Knots [..., K + 1] from logits [..., K]: -bound, ..., bound.

  Bins 2 bound (delta / K + (1 - delta) softmax(raw)), each at least
  delta = 0.1 of a uniform bin.
  """
  k = raw.shape[-1]
  delta = SPLINE_MIN_BIN_FRACTION
  sizes = 2 * bound * (delta / k + (1 - delta) * tf.nn.softmax(raw))
  ends = tf.ones_like(sizes[..., :1]) * bound
  return tf.concat([-ends, -bound + tf.cumsum(sizes[..., :-1], axis=-1),
                    ends], -1)


def _at(table, one_hot):
  """The entries [B, n] of table [B, n, K + 1] where one_hot is 1."""
  return tf.reduce_sum(table * one_hot, -1)


def rq_spline(x, raw_widths, raw_heights, raw_slopes, bound):
  """Monotone RQ spline on [-bound, bound], identity outside (Durkan 2019).

  In bin k (x_k <= x < x_{k+1}), w = x_{k+1} - x_k, h = y_{k+1} - y_k,
  s = h / w, xi = (x - x_k) / w, knot slopes d_k (1 at both ends,
  exp(3 tanh(raw / 3)) inside):

      tau(x) = y_k + h (s xi^2 + d_k xi (1 - xi)) / (s + c xi (1 - xi)),
      tau'(x) = s^2 (d_{k+1} xi^2 + 2 s xi (1 - xi) + d_k (1 - xi)^2)
                / (s + c xi (1 - xi))^2,     c = d_{k+1} + d_k - 2 s.

  The bin is k = #{interior knots <= x} (no data-dependent shapes), its
  knot values read by one-hot sums; points outside the bound are evaluated
  at 0 (finite gradients) and replaced by the identity.

  Args:
    x: [B, n] points.
    raw_widths: [B, n, K] logits of the bin widths (x side).
    raw_heights: [B, n, K] logits of the bin heights (y side).
    raw_slopes: [B, n, K - 1] logits of the interior knot slopes.
    bound: the spline maps [-bound, bound] onto itself.

  Returns:
    (tau(x) [B, n], log tau'(x) [B, n]), x and 0 outside the bound.
  """
  num_bins = raw_widths.shape[-1]
  x_knots, y_knots = _knots(raw_widths, bound), _knots(raw_heights, bound)
  ones = tf.ones_like(raw_slopes[..., :1])
  slopes = tf.concat([ones, tf.exp(bounded(raw_slopes)), ones], -1)
  inside = (x > -bound) & (x < bound)
  x_in = tf.where(inside, x, tf.zeros_like(x))  # Finite gradients outside.
  below = tf.cast(x_in[..., None] >= x_knots[..., 1:-1], tf.int32)
  index = tf.minimum(tf.reduce_sum(below, -1), num_bins - 1)
  left = tf.one_hot(index, num_bins + 1, dtype=x.dtype)  # Knot k.
  right = tf.one_hot(index + 1, num_bins + 1, dtype=x.dtype)  # Knot k + 1.
  x_k, y_k, d_k = (_at(t, left) for t in (x_knots, y_knots, slopes))
  w = _at(x_knots, right) - x_k
  h = _at(y_knots, right) - y_k
  d_k1 = _at(slopes, right)
  s = h / w
  xi = (x_in - x_k) / w
  xi_1 = xi * (1 - xi)
  denominator = s + (d_k1 + d_k - 2 * s) * xi_1
  y = y_k + h * (s * tf.square(xi) + d_k * xi_1) / denominator
  log_derivative = (tf.math.log(tf.square(s) * (
      d_k1 * tf.square(xi) + 2 * s * xi_1 + d_k * tf.square(1 - xi)))
                    - 2 * tf.math.log(denominator))
  return (tf.where(inside, y, x),
          tf.where(inside, log_derivative, tf.zeros_like(x)))


def upper_triangular(raw, m):
  """[M (M + 1) / 2] -> [M, M]: fill_triangular(upper) layout, c tanh diag."""
  flat = tf.concat([raw, tf.reverse(raw[m:], axis=[0])], 0)
  matrix = tf.linalg.band_part(tf.reshape(flat, [m, m]), 0, -1)
  return tf.linalg.set_diag(
      matrix, DIAGONAL_BOUND * tf.tanh(tf.linalg.diag_part(matrix)))


def orthogonal_q(raw):
  """Q [d, M] of the thin QR of raw [d, M], R factor's diagonal positive."""
  q, r = tf.linalg.qr(raw)
  diag = tf.linalg.diag_part(r)
  return q * tf.where(diag < 0, -tf.ones_like(diag), tf.ones_like(diag))


def householder_q(v):
  """Q = H_1 ... H_K [d, d] from raw vectors v [K, d], by rank-one updates."""
  v = v / tf.norm(v, axis=-1, keepdims=True)
  q = tf.eye(v.shape[-1], dtype=v.dtype) - 2.0 * v[0][:, None] * v[0][None, :]
  for k in range(1, v.shape[0]):
    q -= 2.0 * tf.matmul(q, v[k][:, None]) * v[k][None, :]  # Q H_k.
  return q


def sylvester(p, z, q=None):
  """Sylvester layer z + Q R tanh(R~ Q^T z + b): (z' [B, d], log|det| [B]).

  Args:
    p: weights "r", "r_tilde" [M (M + 1) / 2], "b" [M].
    z: [B, d].
    q: Q [d, M], or None for Q = I (M = d).
  """
  m = p["b"].shape[-1]
  r = upper_triangular(p["r"], m)
  r_tilde = upper_triangular(p["r_tilde"], m)
  u = z if q is None else tf.matmul(z, q)  # Rows of Q^T z.
  h = tf.tanh(tf.matmul(u, r_tilde, transpose_b=True) + p["b"])
  r_h = tf.matmul(h, r, transpose_b=True)
  y = z + (r_h if q is None else tf.matmul(r_h, q, transpose_b=True))
  diag = tf.linalg.diag_part(r) * tf.linalg.diag_part(r_tilde)
  log_det = tf.reduce_sum(
      tf.math.log(tf.abs(1.0 + diag * (1.0 - tf.square(h)))), -1)
  return y, log_det


# -------------------------------------------------------------------- stack
def layer_fn(case, num_bins=8, bound=5.0):
  """The layer of family `case`: (params, z [B, d]) -> (z', log|det| [B])."""
  layers = {
      "maf": maf_inverse,
      "iaf": iaf,
      "real_nvp": real_nvp,
      "spline": lambda p, z: spline(p, z, num_bins, bound),
      "sylvester_orthogonal": lambda p, z: sylvester(
          p, z, orthogonal_q(p["q"])),
      "sylvester_householder": lambda p, z: sylvester(
          p, z, householder_q(p["v"])),
      "sylvester_triangular": sylvester,
  }
  return layers[case]


def reversals(case, num_layers):
  """Whether a reversal follows each of the L layers (`flows.make_stack`).

  Ordered families: after every layer but the last, and after the last too
  when L is even, so that u comes out in the order of x.
  """
  ordered = case in ORDERED
  return [ordered and (k < num_layers - 1 or k % 2 == 1)
          for k in range(num_layers)]


def stack(case, layers, x, **options):
  """The L layers of `case` applied to x [B, d]: (u [B, d], log|det| [B]).

  Ordered families reverse the coordinates after their layers
  (`reversals`); MAF's density direction inverts the sampling stack, so it
  runs the layers last to first, each after its reversal.

  Args:
    case: a family.
    layers: L dicts of weights (`hand_layout`), first layer first.
    x: [B, d].
    **options: `layer_fn` options (the spline's num_bins, bound).
  """
  apply = layer_fn(case, **options)
  steps = list(zip(layers, reversals(case, len(layers))))
  log_det = tf.zeros_like(x[:, 0])
  u = x
  for p, reverse in (steps[::-1] if case == "maf" else steps):
    if reverse and case == "maf":
      u = tf.reverse(u, axis=[-1])
    u, layer_log_det = apply(p, u)
    log_det += layer_log_det
    if reverse and case != "maf":
      u = tf.reverse(u, axis=[-1])
  return u, log_det
