"""The true generative networks of the synthetic data sets (TensorFlow only).

    z ~ N(0, I_2),   x_d | z ~ Bernoulli(sigmoid(f_d(z))),   d = 1..64,
    f(z) = W2 tanh(W1 phi(z) + b1) + b2

with fixed weights drawn once from a seeded numpy generator and a feature map
phi per variant ("banana", "bimodal", "ring"; `vib_flows.data.synthetic`
explains what each does to the posteriors p(z|x)). The data package draws the
data sets from these networks; the library's `networks.TrueDecoder` uses the
same f(z) as a fixed decoder.
"""

from collections.abc import Callable
import functools
from typing import Any

import numpy as np
import tensorflow as tf

NUM_PIXELS = 64  # D, shown as 8x8 images.
HIDDEN_UNITS = 32  # Width of the true network's tanh layer.
WEIGHT_SEED = 20_240_601  # numpy seed of the true network's weights.


def _banana(z):
  z1, z2 = z[:, 0], z[:, 1]
  return tf.stack([0.25 * z1, z2 - 0.6 * z1**2], axis=-1)


def _bimodal(z):
  z1, z2 = z[:, 0], z[:, 1]
  return tf.stack([0.5 * z1**2, z2], axis=-1)


def _ring(z):
  return 0.5 * tf.reduce_sum(z**2, axis=-1, keepdims=True)


# Variant name -> (feature map phi: z [N, 2] -> [N, F], F).
FEATURES = {"banana": (_banana, 2), "bimodal": (_bimodal, 2),
            "ring": (_ring, 1)}
VARIANTS = tuple(FEATURES)


@functools.cache
def true_weights(variant: str) -> dict:
  """The fixed weights of the true network of `variant` (float64 numpy).

  Returns:
    {"w1": [F, H], "b1": [H], "w2": [H, D], "b2": [D]}: entries of w1 and b1
    are N(0, 1.5^2), w2 N(0, 2.5^2 / H) (logits of standard deviation about
    2) and b2 N(0, 1). Each variant has its own seed.
  """
  _, num_features = FEATURES[variant]
  rng = np.random.default_rng([WEIGHT_SEED, VARIANTS.index(variant)])
  return {
      "w1": 1.5 * rng.standard_normal((num_features, HIDDEN_UNITS)),
      "b1": 1.5 * rng.standard_normal(HIDDEN_UNITS),
      "w2": 2.5 / np.sqrt(HIDDEN_UNITS) * rng.standard_normal(
          (HIDDEN_UNITS, NUM_PIXELS)),
      "b2": rng.standard_normal(NUM_PIXELS),
  }


def true_logits(z: Any, variant: str) -> tf.Tensor:
  """f(z): z [N, 2] (float32 or float64) -> logits [N, D] in z's dtype."""
  z = tf.convert_to_tensor(z)
  weights = {k: tf.constant(v, z.dtype)
             for k, v in true_weights(variant).items()}
  features, _ = FEATURES[variant]
  hidden = tf.tanh(tf.matmul(features(z), weights["w1"]) + weights["b1"])
  return tf.matmul(hidden, weights["w2"]) + weights["b2"]


def bernoulli_log_likelihood(
    variant: str) -> Callable[[Any, Any], tf.Tensor]:
  """The callable log p(x|z) of the true model, for `vib_flows.quadrature`.

  Returns:
    `fn(x [B, D], z [C, 2]) -> [B, C]`: sum_d x_d f_d - softplus(f_d), in the
    dtype of z (a matrix product over d, so no [B, C, D] tensor is formed).
  """

  def log_likelihood(x, z):
    logits = true_logits(z, variant)
    x = tf.cast(tf.reshape(x, [tf.shape(x)[0], -1]), logits.dtype)
    return (tf.matmul(x, logits, transpose_b=True)
            - tf.reduce_sum(tf.math.softplus(logits), axis=-1)[tf.newaxis])

  return log_likelihood
