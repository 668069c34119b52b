"""Importance-weighted estimates: per example, converging to log p(x).

The noise of sample k of the example at position n depends only on (seed, n, k)
(`vib_flows.indexed_noise`, tests/test_indexed_noise.py), so an example's
estimate is the same alone or in a batch and whatever the chunking of its K
samples (the test metrics: tests/app/test_evaluate.py); and the estimate
converges to the exact log p(x) of a linear-Gaussian VAE.
"""


import numpy as np
import tensorflow as tf

from tests import helpers
from vib_flows.app import model_builder

SEED = tf.constant([1, 2], tf.int32)
# Float32 sums over different batch and chunk shapes agree to rounding only.
RTOL = 1e-5


# Two amortized planar flows on `helpers.small_config`'s networks.
FLOWS = {"flow.num_flows": 2, "flow.amortized": True}


# ------------------------------------------------- per-example independence
def test_estimate_of_an_example_ignores_batch_mates_and_chunks():
  model = helpers.small_model(**FLOWS)
  x = helpers.digits_batch(12)["x"]
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
  config = helpers.config("default")
  config.model.latent_dim = 2
  config.model.encoder_hidden = ()
  config.model.decoder_hidden = ()
  config.model.likelihood = "gaussian"
  config.model.gaussian_scale = _SCALE
  config.flow.num_flows = 0
  model = model_builder.build_model(config,
                                    helpers.data_info((4,), None, None))
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
