"""Checks of a trained VAE / VIB that explain its results.

Log-det, latent use, fit:

- `log_det_error`: the flow's summed log-det against log|det J| of its
  autodiff Jacobian (`tf.GradientTape.batch_jacobian` + `slogdet` in float64)
  on posterior samples of real inputs: a wrong log-det shows here first.
- `active_units`: latent dimensions the model uses (Burda et al. 2016,
  "Importance Weighted Autoencoders", Sec. 5.2),

      A_u = Cov_x( E_{z ~ q(z|x)}[z_u] ),     u active  <=>  A_u > 0.01,

  for the base sample z0 (E[z0|x] is the encoder mean, exact) and for the
  flow's output zK (E[zK|x] by Monte Carlo). A posterior whose KL is low
  because dimensions collapsed to the prior shows fewer active units.
- `aggregate_spread`: how wide the encoder's q0(z0|x) is and how much the
  flow rescales it: the mean encoder standard deviation E_x[sigma(x)] and
  the standard deviations of the aggregate posteriors of z0 and zK (over x
  and z), averaged over dimensions. A flow that contracts (e.g. IAF with a
  small forget bias) shows a wide z0 and a zK of prior scale.
- `split_elbo`: ELBO and importance-weighted log p(x) of a whole split (e.g.
  the training set: the train/test gap separates overfitting from
  underfitting).

Shapes: x [N, *data_shape]; results are Python floats / ints.
"""

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from vib_flows import distributions

ACTIVE_THRESHOLD = 0.01  # Burda et al. 2016.


def _posterior(model, x, num_samples, seed):
  """(loc [N, d], scale [N, d], samples of `model._latent_samples`) for x."""
  loc, scale, context = model._encode_params(x)  # pylint: disable=protected-access
  samples = model._latent_samples(loc, scale, context, num_samples, seed)  # pylint: disable=protected-access
  return loc, scale, samples


def log_det_error(model: keras.Model, x: np.ndarray, seed: int = 0,
                  max_examples: int = 256) -> tuple[float, float]:
  """Max |flow log-det - log|det dzK/dz0|| over posterior samples of x.

  Args:
    model: a `VAE` / `VIB` with a non-empty flow.
    x: [N, *data_shape] inputs (the first `max_examples` are used).
    seed: seed of the posterior samples z0.
    max_examples: examples checked.

  Returns:
    (max absolute error, mean |log-det|) in nats, float64 numbers.
  """
  x = tf.constant(np.asarray(x[:max_examples], np.float32))
  loc, scale, context = model._encode_params(x)  # pylint: disable=protected-access
  z0 = distributions.sample_diagonal_gaussian(
      loc, scale, 1, tf.constant([seed, 1], tf.int32))[0]
  with tf.GradientTape() as tape:
    tape.watch(z0)
    zk, log_det = model.flow(z0, context=context)
  jacobian = tape.batch_jacobian(zk, z0)
  _, autodiff = tf.linalg.slogdet(tf.cast(jacobian, tf.float64))
  error = np.abs(autodiff.numpy() - log_det.numpy().astype(np.float64))
  return float(error.max()), float(np.abs(autodiff.numpy()).mean())


def active_units(model: keras.Model, x: np.ndarray, num_samples: int = 100,
                 seed: int = 0, batch_size: int = 500,
                 threshold: float = ACTIVE_THRESHOLD) -> dict[str, Any]:
  """Active latent units of z0 and zK (see the module docstring).

  Args:
    model: a built `VAE` / `VIB`.
    x: [N, *data_shape] inputs (N >= 2).
    num_samples: Monte Carlo samples of E[zK|x] per input.
    seed: seed of those samples.
    batch_size: inputs per pass.
    threshold: activity threshold on A_u.

  Returns:
    dict: active_units_z0, active_units_zk (ints) and the activities
    activity_z0, activity_zk (lists of d floats, A_u per dimension).
  """
  x = np.asarray(x, np.float32)
  if x.shape[0] < 2:
    raise ValueError(f"active_units needs >= 2 inputs, got {x.shape[0]}.")
  means_z0, means_zk = [], []
  for start in range(0, x.shape[0], batch_size):
    batch = tf.constant(x[start:start + batch_size])
    loc, _, samples = _posterior(model, batch, num_samples,
                                 tf.constant([seed, start], tf.int32))
    zk = tf.reshape(samples["zk"], [num_samples, -1, loc.shape[-1]])
    means_z0.append(loc.numpy())
    means_zk.append(tf.reduce_mean(zk, axis=0).numpy())
  activity_z0 = np.concatenate(means_z0).astype(np.float64).var(axis=0, ddof=1)
  activity_zk = np.concatenate(means_zk).astype(np.float64).var(axis=0, ddof=1)
  return {
      "active_units_z0": int(np.sum(activity_z0 > threshold)),
      "active_units_zk": int(np.sum(activity_zk > threshold)),
      "activity_z0": activity_z0.tolist(),
      "activity_zk": activity_zk.tolist(),
  }


def aggregate_spread(model: keras.Model, x: np.ndarray, num_samples: int = 10,
                     seed: int = 0, batch_size: int = 500
                     ) -> dict[str, float]:
  """Spread of q0(z0|x) and of the aggregate posteriors of z0 and zK.

  For each dimension u, over inputs x and samples z ~ q(z|x):

      std_u(z) = sqrt( E_{x,z}[z_u^2] - E_{x,z}[z_u]^2 ),

  computed from sums in float64; the results are means over dimensions.

  Args:
    model: a built `VAE` / `VIB`.
    x: [N, *data_shape] inputs.
    num_samples: posterior samples per input.
    seed: seed of the samples.
    batch_size: inputs per pass.

  Returns:
    dict: encoder_scale_mean (mean of sigma(x) over inputs and dimensions),
    aggregate_std_z0, aggregate_std_zk (floats).
  """
  x = np.asarray(x, np.float32)
  scale_sum, count = 0.0, 0
  moments = {"z0": [0.0, 0.0], "zk": [0.0, 0.0]}
  for start in range(0, x.shape[0], batch_size):
    batch = tf.constant(x[start:start + batch_size])
    loc, scale, samples = _posterior(model, batch, num_samples,
                                     tf.constant([seed, start], tf.int32))
    scale_sum += float(tf.reduce_sum(tf.cast(scale, tf.float64)))
    count += int(batch.shape[0]) * num_samples
    for key in moments:
      z = tf.reshape(tf.cast(samples[key], tf.float64), [-1, loc.shape[-1]])
      moments[key][0] += tf.reduce_sum(z, axis=0).numpy()
      moments[key][1] += tf.reduce_sum(tf.square(z), axis=0).numpy()
  result = {"encoder_scale_mean": scale_sum / (x.shape[0] * loc.shape[-1])}
  for key, (total, total_sq) in moments.items():
    mean = total / count
    variance = np.maximum(total_sq / count - mean**2, 0.0)
    result[f"aggregate_std_{key}"] = float(np.sqrt(variance).mean())
  return result


def split_elbo(model: keras.Model, x: np.ndarray, num_samples: int = 100,
               seed: int = 0, batch_size: int = 500,
               chunk_size: int = 100) -> tuple[float, float]:
  """Mean ELBO and importance-weighted log p(x) of a VAE over inputs x.

  Both come from the same `num_samples` log-weights per input
  (`VAE.log_likelihood`); the ELBO is their mean, so it is unbiased for any
  K, while the IW bound tightens with K.

  Returns:
    (elbo, iw_log_likelihood): per-input means, nats.
  """
  x = np.asarray(x, np.float32)
  fn = tf.function(lambda xb, s: model.log_likelihood(
      xb, num_samples, s, chunk_size=min(chunk_size, num_samples)),
                   reduce_retracing=True)
  elbo, iw = 0.0, 0.0
  for start in range(0, x.shape[0], batch_size):
    e, ll = fn(tf.constant(x[start:start + batch_size]),
               tf.constant([seed, start], tf.int32))
    elbo += float(tf.reduce_sum(e))
    iw += float(tf.reduce_sum(ll))
  return elbo / x.shape[0], iw / x.shape[0]
