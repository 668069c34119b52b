"""Per-example noise (`vib_flows.indexed_noise`): TensorFlow's Philox stream.

The noise of sample k of the example at position n depends only on
(seed, n, k): the bits of TensorFlow's stateless Philox generator at that
counter, standard normal, uncorrelated between neighbours.
"""

import numpy as np
import tensorflow as tf

from vib_flows import indexed_noise

SEED = tf.constant([1, 2], tf.int32)


def test_philox_matches_tensorflows_generator_bit_for_bit():
  key, _ = tf.raw_ops.StatelessRandomGetKeyCounter(seed=SEED)
  counter = tf.constant([7 + (123 << 32), 2**33 + 5], tf.uint64)
  reference = tf.raw_ops.StatelessRandomUniformFullIntV2(
      shape=[4], key=key, counter=counter, alg=1, dtype=tf.uint32)
  words = [tf.constant([w], tf.uint64) for w in (7, 123, 5, 2)]
  bits = indexed_noise.philox4x32(indexed_noise.philox_key(SEED), words)
  np.testing.assert_array_equal(
      np.concatenate([b.numpy() for b in bits]), reference.numpy())


def test_indexed_noise_is_tensorflows_normal_stream_at_each_counter():
  examples, samples, dim = [0, 5, 2**33 + 1], [0, 1, 9], 6
  eps = indexed_noise.normal(SEED, tf.constant(examples, tf.int64),
                             tf.constant(samples), dim).numpy()
  assert eps.shape == (3, 3, dim)
  key, _ = tf.raw_ops.StatelessRandomGetKeyCounter(seed=SEED)
  for s, k in enumerate(samples):
    for b, n in enumerate(examples):
      reference = tf.raw_ops.StatelessRandomNormalV2(
          shape=[8], key=key, counter=tf.constant([k << 32, n], tf.uint64),
          alg=1)[:dim]
      # Same bits; only sin/cos/log may round differently (float32).
      np.testing.assert_allclose(eps[s, b], reference.numpy(), atol=1e-5)


def test_indexed_noise_moments():
  eps = indexed_noise.normal(SEED, tf.range(400), tf.range(50), 5).numpy()
  flat = eps.reshape(-1, 5)  # 20000 draws of 5 coordinates.
  # Standard errors: mean 0.007, variance 0.01, correlation 0.007.
  np.testing.assert_allclose(flat.mean(0), 0.0, atol=0.05)
  np.testing.assert_allclose(flat.var(0), 1.0, atol=0.07)
  corr = np.corrcoef(flat, rowvar=False) - np.eye(5)
  assert np.abs(corr).max() < 0.05
  # Neighbouring examples and samples are not correlated either.
  assert abs(np.corrcoef(eps[:, 1:, 0].ravel(), eps[:, :-1, 0].ravel())[0, 1]
             ) < 0.05
  assert abs(np.corrcoef(eps[1:, :, 0].ravel(), eps[:-1, :, 0].ravel())[0, 1]
             ) < 0.05
