"""The diagonal Gaussian posterior q0(z0|x) = N(mu(x), diag sigma(x)^2).

Sampled by reparameterization (Kingma & Welling 2014, "Auto-Encoding
Variational Bayes")

    z0 = mu + sigma * eps,      eps ~ N(0, I),

from stateless random ops driven by an explicit seed (an integer tensor of
shape [2]), so that runs repeat and a SavedModel can sample in the C++
runtime; its log-density, and its closed-form KL to another diagonal Gaussian.
Every log-density is float32, whatever the compute dtype.
"""

from typing import Any

import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla as tf2xla
from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.ops import control_flow_util
import tensorflow_probability as tfp

tfd = tfp.distributions
TensorLike = Any  # tf.Tensor, np.ndarray or a Python number.

_AUTO_SELECT_ALGORITHM = 3  # tf.random.Algorithm.AUTO_SELECT.value.


def stateless_standard_normal(shape: TensorLike,
                              seed: TensorLike) -> tf.Tensor:
  """Eps ~ N(0, I) of `shape`: `tf.random.stateless_normal(shape, seed)`.

  The same numbers, op for op, as `tf.random.stateless_normal` (key and
  counter from the seed, then the counter-based generator, "auto_select"
  algorithm). Inside an XLA compilation an optimization barrier separates
  the two: otherwise XLA's CPU backend fuses the seed scrambling (and the
  seed's own derivation, e.g. `stateless_fold_in`) into the loop over the
  output and recomputes it for every element, which made drawing the VIB's
  [1, 128, 256] noise cost more than its largest matmul
  (experiments/research/vib_xla_probe.py, docs/performance.md).

  Args:
    shape: 1-D int, the output shape.
    seed: int32/int64 tensor [2].

  Returns:
    float32 tensor of `shape`.
  """
  key, counter = tf.raw_ops.StatelessRandomGetKeyCounter(seed=seed)
  # Only under XLA: the barrier is an XLA op, and a SavedModel served by the
  # C++ runtime must not contain it.
  if control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph()):
    key, counter = tf2xla.optimization_barrier(key, counter)
  return tf.raw_ops.StatelessRandomNormalV2(
      shape=shape, key=key, counter=counter, alg=_AUTO_SELECT_ALGORITHM,
      dtype=tf.float32)


def sample_diagonal_gaussian(loc: TensorLike, scale: TensorLike,
                             num_samples: TensorLike,
                             seed: TensorLike) -> tf.Tensor:
  """Reparameterized samples z = loc + scale * eps of N(loc, diag scale^2).

  Args:
    loc: [B, d] float32 means.
    scale: [B, d] float32 standard deviations (> 0).
    num_samples: S, samples per example (int or scalar int tensor).
    seed: int32/int64 tensor [2], the stateless seed.

  Returns:
    z: [S, B, d] float32, differentiable w.r.t. loc and scale.
  """
  loc = tf.convert_to_tensor(loc, tf.float32)
  scale = tf.convert_to_tensor(scale, tf.float32)
  shape = tf.concat([[num_samples], tf.shape(loc)], axis=0)
  eps = stateless_standard_normal(shape, seed)
  return loc + scale * eps


def diagonal_gaussian(loc: TensorLike,
                      scale: TensorLike) -> tfp.distributions.Distribution:
  """The TFP distribution N(loc, diag scale^2), event shape [d]."""
  return tfd.Independent(tfd.Normal(loc, scale), reinterpreted_batch_ndims=1)


def diagonal_gaussian_log_prob(z: TensorLike, loc: TensorLike,
                               scale: TensorLike) -> tf.Tensor:
  """Log N(z; loc, diag scale^2), summed over the last axis.

  Args:
    z: [..., B, d] points (broadcast against loc/scale [B, d]).
    loc: [B, d] means.
    scale: [B, d] standard deviations.

  Returns:
    [..., B] float32 log-densities.
  """
  z = tf.cast(z, tf.float32)
  return diagonal_gaussian(
      tf.cast(loc, tf.float32), tf.cast(scale, tf.float32)
  ).log_prob(z)


def kl_diagonal_gaussians(loc_q: TensorLike, scale_q: TensorLike,
                          loc_p: TensorLike = 0.0,
                          scale_p: TensorLike = 1.0) -> tf.Tensor:
  """Closed-form KL(N(loc_q, diag scale_q^2) || N(loc_p, diag scale_p^2)).

      KL = sum_i [ log(s_p / s_q) + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2 ]

  (Kingma & Welling 2014, Appendix B, for the standard-normal prior.)

  Args:
    loc_q: [..., d] means of q.
    scale_q: [..., d] standard deviations of q.
    loc_p: means of p, broadcastable to [..., d]; default 0 (standard
      normal).
    scale_p: standard deviations of p, broadcastable to [..., d]; default 1.

  Returns:
    [...] float32, summed over the last axis.
  """
  loc_q, scale_q, loc_p, scale_p = (
      tf.cast(t, tf.float32) for t in (loc_q, scale_q, loc_p, scale_p)
  )
  loc_p = loc_p + tf.zeros_like(loc_q)
  scale_p = scale_p + tf.zeros_like(scale_q)
  terms = (
      tf.math.log(scale_p) - tf.math.log(scale_q)
      + (tf.square(scale_q) + tf.square(loc_q - loc_p))
      / (2.0 * tf.square(scale_p))
      - 0.5
  )
  return tf.reduce_sum(terms, axis=-1)
