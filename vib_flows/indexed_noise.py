"""Standard-normal noise addressed by (seed, example index, sample index).

An evaluation estimate of one example must not depend on its batch-mates or on
how its K importance samples are split into chunks, so the noise of sample k of
example n must be a function of (seed, n, k) alone. TensorFlow's stateless ops
take one seed per call (and `tf.vectorized_map` runs them one seed at a time),
so this module evaluates TensorFlow's own counter-based generator,
Philox-4x32-10 (Salmon et al. 2011, "Parallel Random Numbers: As Easy as 1, 2,
3"), at explicit counters, vectorized over examples and samples:

    key        = the Philox key TF derives from `seed`
                 (`tf.raw_ops.StatelessRandomGetKeyCounter`)
    counter    = (g, k, lo32(n), hi32(n))                  four 32-bit words
    (u0..u3)   = Philox_key(counter)                       four uint32
    eps[k, n, 4g:4g+4] = BoxMuller(u0, u1), BoxMuller(u2, u3)

with TF's Box-Muller transform (`tf.random.stateless_normal`). The numbers are
those of `tf.raw_ops.StatelessRandomNormalV2(shape=[4 * G], key=key,
counter=[k * 2**32, n], alg=1)`, the Philox stream TF would draw from that
counter (tests/test_indexed_noise.py checks it).
"""

import math

import tensorflow as tf

# Philox-4x32 multipliers and Weyl key increments (Salmon et al. 2011; the
# constants of TensorFlow's philox_random.h).
_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_ROUNDS = 10
_MASK32 = 0xFFFFFFFF
_BOX_MULLER_EPSILON = 1.0e-7  # TF's floor of the first uniform (log(0)).


def _u64(value):
  return tf.constant(value, tf.uint64)


def philox4x32(key, counter):
  """Philox-4x32-10 of 128-bit counters under a 64-bit key.

  Args:
    key: (k0, k1), uint64 tensors holding 32-bit words (broadcastable).
    counter: (c0, c1, c2, c3), uint64 tensors holding 32-bit words, all of one
      shape.

  Returns:
    Four uint64 tensors of the counters' shape holding the 32-bit outputs.
  """
  mask, shift = _u64(_MASK32), _u64(32)
  k0, k1 = key
  c0, c1, c2, c3 = counter
  for r in range(_ROUNDS):
    p0 = _u64(_M0) * c0  # 32 x 32 -> 64 bits, exact in uint64.
    p1 = _u64(_M1) * c2
    c0, c1, c2, c3 = (
        tf.bitwise.bitwise_xor(tf.bitwise.bitwise_xor(
            tf.bitwise.right_shift(p1, shift), c1), k0),
        tf.bitwise.bitwise_and(p1, mask),
        tf.bitwise.bitwise_xor(tf.bitwise.bitwise_xor(
            tf.bitwise.right_shift(p0, shift), c3), k1),
        tf.bitwise.bitwise_and(p0, mask),
    )
    if r + 1 < _ROUNDS:
      k0 = tf.bitwise.bitwise_and(k0 + _u64(_W0), mask)
      k1 = tf.bitwise.bitwise_and(k1 + _u64(_W1), mask)
  return c0, c1, c2, c3


def _unit_float(bits):
  """uint32 bits -> float32 in [0, 1): the 23 low bits as a mantissa (TF's)."""
  mantissa = tf.bitwise.bitwise_or(
      tf.bitwise.bitwise_and(bits, _u64(0x7FFFFF)), _u64(0x3F800000))
  return tf.bitcast(tf.cast(mantissa, tf.uint32), tf.float32) - 1.0


def _box_muller(bits0, bits1):
  """Two uint32 -> two independent N(0, 1) float32 (TF's BoxMullerFloat)."""
  u1 = tf.maximum(_unit_float(bits0), _BOX_MULLER_EPSILON)
  angle = (2.0 * math.pi) * _unit_float(bits1)
  radius = tf.sqrt(-2.0 * tf.math.log(u1))
  return radius * tf.sin(angle), radius * tf.cos(angle)


def philox_key(seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """The Philox key (two 32-bit words in uint64) TF derives from `seed` [2]."""
  key, _ = tf.raw_ops.StatelessRandomGetKeyCounter(
      seed=tf.convert_to_tensor(seed))
  key = key[0]
  return (tf.bitwise.bitwise_and(key, _u64(_MASK32)),
          tf.bitwise.right_shift(key, _u64(32)))


def normal(seed: tf.Tensor, example_index: tf.Tensor, sample_index: tf.Tensor,
           dim: int) -> tf.Tensor:
  """N(0, I_dim) noise eps[s, b] that depends only on (seed, n_b, k_s).

  Args:
    seed: int32/int64 [2], the stateless seed.
    example_index: [B] integer indices n_b >= 0 (e.g. positions in a split).
    sample_index: [S] integer indices 0 <= k_s < 2**32.
    dim: d, the event size (a Python int).

  Returns:
    [S, B, dim] float32; entries with different (n, k) or coordinates are
    independent standard normals.
  """
  groups = -(-int(dim) // 4)  # Each Philox call gives four normals.
  n = tf.cast(tf.convert_to_tensor(example_index), tf.int64)
  k = tf.cast(tf.convert_to_tensor(sample_index), tf.int64)
  n = tf.bitcast(n, tf.uint64)[tf.newaxis, :, tf.newaxis]       # [1, B, 1]
  k = tf.bitcast(k, tf.uint64)[:, tf.newaxis, tf.newaxis]       # [S, 1, 1]
  g = tf.range(groups, dtype=tf.int64)
  g = tf.bitcast(g, tf.uint64)[tf.newaxis, tf.newaxis, :]       # [1, 1, G]
  shape = tf.broadcast_dynamic_shape(
      tf.broadcast_dynamic_shape(tf.shape(n), tf.shape(k)), tf.shape(g))
  mask = _u64(_MASK32)
  counter = [tf.broadcast_to(c, shape) for c in (
      g, tf.bitwise.bitwise_and(k, mask), tf.bitwise.bitwise_and(n, mask),
      tf.bitwise.right_shift(n, _u64(32)))]
  u0, u1, u2, u3 = philox4x32(philox_key(seed), counter)
  e0, e1 = _box_muller(u0, u1)
  e2, e3 = _box_muller(u2, u3)
  eps = tf.stack([e0, e1, e2, e3], axis=-1)                    # [S, B, G, 4]
  eps = tf.reshape(eps, tf.concat([shape[:2], [4 * groups]], 0))
  return eps[..., :dim]
