"""Importance-weighted evaluation: per-example noise, convergence to log p(x).

The noise of sample k of the example at position n depends only on (seed, n, k)
(`vib_flows.indexed_noise`), so an example's estimate is the same alone or in a
batch and whatever the chunking of its K samples; and the estimate converges to
the exact log p(x) of a linear-Gaussian VAE.
"""

import types

import numpy as np
import pytest
import tensorflow as tf

from configs import default
from vib_flows import indexed_noise
from vib_flows.app import evaluate
from vib_flows.app import model_builder

SEED = tf.constant([1, 2], tf.int32)
# Float32 sums over different batch and chunk shapes agree to rounding only.
RTOL = 1e-5


def _config(kind="vae", **overrides):
  config = default.get_config()
  config.model.kind = kind
  config.model.latent_dim = 4
  config.model.encoder_hidden = (16,)
  config.model.decoder_hidden = (16,)
  config.model.context_dim = 8
  config.flow.name = "planar"
  config.flow.num_flows = 2
  config.flow.amortized = True
  config.flow.hidden_units = 8
  for key, value in overrides.items():
    section, field = key.split("__")
    config[section][field] = value
  return config


def _info(shape=(64,)):
  return types.SimpleNamespace(input_shape=shape, num_classes=10,
                               num_levels=17)


def _digits_like(n, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.integers(0, 17, size=(n, 64)).astype("float32"),
          rng.integers(0, 10, size=n).astype("int32"))


# ------------------------------------------------------------ indexed noise
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


# ------------------------------------------------- per-example independence
def test_estimate_of_an_example_ignores_batch_mates_and_chunks():
  model = model_builder.build_model(_config(), _info())
  x, _ = _digits_like(12)
  index = tf.range(100, 112)  # Positions in some split.
  elbo, iw = model.log_likelihood(x, 24, SEED, chunk_size=24,
                                  example_index=index)
  for chunk in (5, 16):
    e, ll = model.log_likelihood(x, 24, SEED, chunk_size=chunk,
                                 example_index=index)
    np.testing.assert_allclose(ll, iw, rtol=RTOL)
    np.testing.assert_allclose(e, elbo, rtol=RTOL)
  # Split into batches of 5 and 7, and one example alone.
  for lo, hi in ((0, 5), (5, 12), (3, 4)):
    e, ll = model.log_likelihood(x[lo:hi], 24, SEED, chunk_size=7,
                                 example_index=index[lo:hi])
    np.testing.assert_allclose(ll, iw[lo:hi], rtol=RTOL)
    np.testing.assert_allclose(e, elbo[lo:hi], rtol=RTOL)
  # The noise does depend on the index: example 3 as if it were example 4.
  _, moved = model.log_likelihood(x[3:4], 24, SEED, example_index=index[4:5])
  assert abs(float(moved[0]) - float(iw[3])) > 1e-3


def _splits(kind, n=23):
  x, y = _digits_like(n)
  x_train, y_train = _digits_like(40, seed=1)
  labels = kind == "vib"
  return types.SimpleNamespace(
      test=types.SimpleNamespace(x=x, y=y if labels else None),
      train=types.SimpleNamespace(x=x_train, y=y_train if labels else None),
      info=types.SimpleNamespace(num_classes=10))


def _test_metrics(model, splits, config, batch_size, chunk_size):
  config.eval.batch_size = batch_size
  config.eval.importance_chunk_size = chunk_size
  return evaluate.test_metrics(model, splits, config)


@pytest.mark.slow  # Traces the evaluation twice: 20-30 s on 2 busy cores.
def test_vae_test_metrics_ignore_eval_batch_and_chunk_size():
  config = _config(eval__num_importance_samples=24, loss__num_samples=2)
  model = model_builder.build_model(config, _info())
  splits = _splits("vae")
  reference = _test_metrics(model, splits, config, 23, 24)
  for batch_size, chunk_size in ((4, 5),):
    metrics = _test_metrics(model, splits, config, batch_size, chunk_size)
    for key in ("test_log_likelihood", "test_elbo", "test_kl", "test_loss",
                "test_reconstruction"):
      np.testing.assert_allclose(metrics[key], reference[key], rtol=RTOL,
                                 err_msg=f"{key}, batch {batch_size}, "
                                         f"chunk {chunk_size}")


def test_vib_test_metrics_ignore_eval_batch_size():
  config = _config("vib", eval__vib_num_samples=3, loss__num_samples=2)
  model = model_builder.build_model(config, _info())
  splits = _splits("vib")
  reference = _test_metrics(model, splits, config, 23, 1)
  for batch_size in (4,):
    metrics = _test_metrics(model, splits, config, batch_size, 1)
    for key in ("test_cross_entropy", "test_kl", "test_loss"):
      np.testing.assert_allclose(metrics[key], reference[key], rtol=RTOL,
                                 err_msg=f"{key}, batch {batch_size}")
    assert metrics["test_accuracy"] == reference["test_accuracy"]


# -------------------------------------------------------------- convergence
_SCALE = 0.5  # Pixel noise s of the Gaussian likelihood.
_W = np.array([[1.5, 1.0, 0.5, -0.5], [1.2, 0.9, -0.3, 0.4]])  # [d, D]
_B = np.array([0.1, -0.2, 0.3, 0.0])


def _linear_gaussian_vae():
  """X = W^T z + b + s eps, z ~ N(0, I_2): p(x) = N(b, W^T W + s^2 I).

  The encoder is linear and gives the exact posterior mean
  m(x) = Sigma W (x - b) / s^2, Sigma = (I + W W^T / s^2)^-1, with a diagonal
  scale 1.5 sqrt(diag Sigma), wider than the (correlated) posterior.

  Returns:
    (model, posterior covariance Sigma [2, 2], q's scale [2]).
  """
  config = default.get_config()
  config.model.latent_dim = 2
  config.model.encoder_hidden = ()
  config.model.decoder_hidden = ()
  config.model.likelihood = "gaussian"
  config.model.gaussian_scale = _SCALE
  config.flow.num_flows = 0
  model = model_builder.build_model(config, types.SimpleNamespace(
      input_shape=(4,), num_classes=None, num_levels=None))
  sigma = np.linalg.inv(np.eye(2) + _W @ _W.T / _SCALE**2)
  gain = _W.T @ sigma / _SCALE**2  # [D, d]: m(x) = (x - b) @ gain.
  scale = 1.5 * np.sqrt(np.diag(sigma))
  encoder = model.encoder
  model.decoder.head.set_weights([_W.astype("f4"), _B.astype("f4")])
  encoder.loc_head.set_weights([gain.astype("f4"),
                                (-_B @ gain).astype("f4")])
  encoder.scale_head.set_weights([
      np.zeros((4, 2), "f4"),
      np.log(np.expm1(scale - encoder.min_scale)).astype("f4")])
  return model, sigma, scale


def test_iw_estimate_converges_to_exact_log_likelihood():
  model, sigma, scale = _linear_gaussian_vae()
  rng = np.random.default_rng(0)
  z = rng.normal(size=(8, 2))
  x = z @ _W + _B + _SCALE * rng.normal(size=(8, 4))
  cov = _W.T @ _W + _SCALE**2 * np.eye(4)
  d = x - _B
  exact = -0.5 * (np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)
                  + np.linalg.slogdet(2 * np.pi * cov)[1])
  # ELBO = log p(x) - KL(q(z|x) || p(z|x)); q and p(z|x) share their mean,
  # so KL = (tr(Sigma^-1 Q) - d + log det Sigma - log det Q) / 2.
  q = np.diag(scale**2)
  gap = 0.5 * (np.trace(np.linalg.solve(sigma, q)) - 2
               + np.linalg.slogdet(sigma)[1] - np.linalg.slogdet(q)[1])
  assert gap > 2.0  # The diagonal q is far from the posterior ...
  elbo, iw = model.log_likelihood(x.astype("f4"), 5000, SEED, chunk_size=500)
  elbo, iw = elbo.numpy(), iw.numpy()
  # ... and K = 5000 closes the gap. Standard errors per example, measured
  # over seeds: 0.02 nats for the ELBO, 0.015 for the IW estimate.
  np.testing.assert_allclose(elbo, exact - gap, atol=0.15)
  np.testing.assert_allclose(iw, exact, atol=0.1)
  assert abs(np.mean(iw - exact)) < 0.05
