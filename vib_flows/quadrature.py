"""Exact log p(x) of a model with a 2-D latent z ~ N(0, I), by quadrature.

    log p(x) = log integral p(x|z) N(z; 0, I) dz
             ~= logsumexp_g [log p(x|z_g) + log N(z_g; 0, I) + log h^2]

over the midpoints z_g of an n x n grid of square cells of side h = 2 L / n
on the box [-L, L]^2 (the midpoint rule). For integrands that are smooth and
vanish at the edge of the box the rule converges faster than any power of h,
so a grid fine against the width of p(z|x) gives log p(x) to many digits; the
box leaves out prior mass P(|z_i| > L) per axis (2e-9 at L = 6). Everything
runs in float64; the grid is visited in chunks (`tf.map_fn`, one at a time), so
memory is B x chunk_size whatever n is.
"""

from collections.abc import Callable

import numpy as np
import tensorflow as tf

LATENT_DIM = 2
NUM_POINTS = 256  # n, grid points per axis.
BOUND = 6.0  # L, the grid covers [-L, L]^2.
CHUNK_SIZE = 8192  # Grid points per chunk.

# (x [B, ...], z [C, 2] float64) -> log p(x|z) [B, C] float64.
LogLikelihoodFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def grid(num_points: int = NUM_POINTS, bound: float = BOUND
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The midpoint grid and its log quadrature weights.

  Args:
    num_points: n, points per axis (>= 2).
    bound: L > 0, half the side of the box.

  Returns:
    (axis [n] float64 midpoints, z [n * n, 2] float64 with z[i * n + j] =
    (axis[i], axis[j]), log_weight [n * n] float64 = log N(z; 0, I) + log h^2).

  Raises:
    ValueError: num_points < 2 or bound <= 0.
  """
  num_points = int(num_points)
  bound = float(bound)
  if num_points < 2:
    raise ValueError(f"num_points must be >= 2, got {num_points}.")
  if not bound > 0:
    raise ValueError(f"bound must be > 0, got {bound}.")
  h = 2.0 * bound / num_points
  axis = -bound + h * (np.arange(num_points) + 0.5)
  z1, z2 = np.meshgrid(axis, axis, indexing="ij")
  z = np.stack([z1.ravel(), z2.ravel()], axis=-1)
  log_weight = (-0.5 * np.sum(z**2, axis=-1) - np.log(2.0 * np.pi)
                + 2.0 * np.log(h))
  return axis, z, log_weight


def log_marginal_likelihood(log_likelihood: LogLikelihoodFn,
                            x: tf.Tensor | np.ndarray,
                            num_points: int = NUM_POINTS,
                            bound: float = BOUND,
                            chunk_size: int = CHUNK_SIZE) -> tf.Tensor:
  """Log p(x) [B] float64 by the midpoint rule (see the module docstring).

  Args:
    log_likelihood: `(x [B, ...], z [C, 2] float64) -> [B, C]` log p(x|z),
      any likelihood (Bernoulli, Gaussian, ...).
    x: [B, ...] examples, passed to `log_likelihood` as float64.
    num_points: n, grid points per axis.
    bound: L, the box [-L, L]^2.
    chunk_size: grid points per call of `log_likelihood`.

  Returns:
    float64 [B].
  """
  _, z, log_weight = grid(num_points, bound)
  chunk_size = max(1, min(int(chunk_size), z.shape[0]))
  num_chunks = -(-z.shape[0] // chunk_size)
  pad = num_chunks * chunk_size - z.shape[0]
  # Padding points carry weight 0 (log weight -inf): they add nothing.
  z = np.concatenate([z, np.zeros((pad, LATENT_DIM))])
  log_weight = np.concatenate([log_weight, np.full(pad, -np.inf)])
  z = tf.constant(z.reshape(num_chunks, chunk_size, LATENT_DIM), tf.float64)
  log_weight = tf.constant(log_weight.reshape(num_chunks, chunk_size),
                           tf.float64)
  x = tf.convert_to_tensor(x, tf.float64)

  def chunk_logsumexp(args):
    z_chunk, log_weight_chunk = args
    log_joint = log_likelihood(x, z_chunk) + log_weight_chunk[tf.newaxis]
    return tf.reduce_logsumexp(log_joint, axis=1)

  per_chunk = tf.map_fn(
      chunk_logsumexp, (z, log_weight),
      fn_output_signature=tf.TensorSpec([None], tf.float64),
      parallel_iterations=1)
  return tf.reduce_logsumexp(per_chunk, axis=0)


def log_posterior(log_likelihood: LogLikelihoodFn, x: tf.Tensor | np.ndarray,
                  num_points: int = 200, bound: float = 4.0
                  ) -> tuple[np.ndarray, np.ndarray]:
  """Log p(z|x) on a grid, for pictures of the true posterior.

  Args:
    log_likelihood: as in `log_marginal_likelihood`.
    x: [B, ...] a few examples (no chunking: B x n^2 values at once).
    num_points: n, grid points per axis.
    bound: L, the box [-L, L]^2.

  Returns:
    (axis [n] float64, log_density [B, n, n] float64 with
    log_density[b, i, j] = log p(z = (axis[i], axis[j]) | x_b), normalized
    over the grid: sum exp(log_density) h^2 = 1).
  """
  axis, z, log_weight = grid(num_points, bound)
  h = axis[1] - axis[0]
  log_joint = (log_likelihood(tf.convert_to_tensor(x, tf.float64),
                              tf.constant(z, tf.float64)) + log_weight)
  log_norm = tf.reduce_logsumexp(log_joint, axis=1, keepdims=True)
  log_density = log_joint - log_norm - 2.0 * np.log(h)
  n = int(num_points)
  return axis, tf.reshape(log_density, [-1, n, n]).numpy()
