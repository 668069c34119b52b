"""Tests of vib_flows.objectives against closed-form references.

The probabilistic-PCA model (Tipping & Bishop 1999), z ~ N(0, I_k),
x = W z + b + N(0, s^2 I_D), has

    log p(x) = log N(x; b, W W^T + s^2 I)
    p(z|x)   = N(M^-1 W^T (x - b), s^2 M^-1),   M = W^T W + s^2 I,

and with orthogonal columns of W the exact posterior is diagonal, so the
package's diagonal-Gaussian posterior can represent it.
"""

import math

import numpy as np
import tensorflow as tf

from vib_flows import distributions
from vib_flows import objectives


def test_beta_schedule_is_linear_warmup():
  got = [float(objectives.beta_schedule(s, 2.0, 100)) for s in
         (0, 25, 50, 100, 1000)]
  np.testing.assert_allclose(got, [0.0, 0.5, 1.0, 2.0, 2.0], rtol=1e-6)
  assert float(objectives.beta_schedule(0, 2.0, 0)) == 2.0
  assert float(objectives.beta_schedule(tf.constant(7, tf.int64), 0.5,
                                        0)) == 0.5


def test_chunked_stats_are_mean_and_logmeanexp():
  rng = np.random.default_rng(0)
  log_w = (rng.normal(size=(1003, 3)) * 5 - 300).astype("float32")
  log_w64 = log_w.astype(np.float64)
  m = log_w64.max(0)
  ref = m + np.log(np.mean(np.exp(log_w64 - m), 0))
  table = tf.constant(log_w)
  for chunk in (1, 7, 500, 1003, 5000):
    def fn(i, n, chunk=chunk):
      return table[i * chunk:i * chunk + n]
    elbo, iw = objectives.chunked_log_weight_stats(fn, 1003, chunk, 3)
    np.testing.assert_allclose(iw.numpy(), ref, rtol=1e-6)
    np.testing.assert_allclose(elbo.numpy(), log_w64.mean(0), rtol=1e-6)


class _PPCA:
  """A linear-Gaussian model with closed-form evidence and posterior."""

  def __init__(self, d_x=5, d_z=2, noise=0.5, n=16, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d_x, d_z)))
    self.w = q * np.array([2.0, 1.0])[:d_z]  # Orthogonal columns.
    self.b = rng.normal(size=d_x)
    self.noise = noise
    z = rng.normal(size=(n, d_z))
    self.x = z @ self.w.T + self.b + noise * rng.normal(size=(n, d_x))
    cov = self.w @ self.w.T + noise**2 * np.eye(d_x)
    diff = self.x - self.b
    _, logdet = np.linalg.slogdet(cov)
    self.log_px = -0.5 * (d_x * np.log(2 * np.pi) + logdet + np.einsum(
        "ni,ij,nj->n", diff, np.linalg.inv(cov), diff))
    m_diag = np.sum(self.w**2, 0) + noise**2  # M = W^T W + s^2 I is diagonal.
    self.post_loc = diff @ self.w / m_diag
    self.post_scale = np.tile(noise / np.sqrt(m_diag), (n, 1))
    self.likelihood = distributions.GaussianLikelihood((d_x,), scale=noise)
    self.prior = distributions.StandardNormalPrior(d_z)

  def log_weights(self, loc, scale, num_samples, seed):
    """[K, n] log p(x|z) + log p(z) - log q(z|x), z ~ q, from the package."""
    loc = tf.constant(loc, tf.float32)
    scale = tf.constant(scale, tf.float32)
    z = distributions.sample_diagonal_gaussian(loc, scale, num_samples, seed)
    k, n, d_z = num_samples, loc.shape[0], loc.shape[1]
    flat = tf.reshape(z, [-1, d_z])
    mean = tf.matmul(flat, tf.constant(self.w.T, tf.float32)) + self.b
    x = tf.tile(tf.constant(self.x, tf.float32), [k, 1])
    log_px = tf.reshape(self.likelihood.log_prob(mean, x), [k, n])
    log_pz = tf.reshape(self.prior.log_prob(flat), [k, n])
    log_q = distributions.diagonal_gaussian_log_prob(z, loc, scale)
    return (log_px + log_pz - log_q).numpy().astype(np.float64)


def test_elbo_is_below_log_px_and_tight_at_the_exact_posterior():
  model = _PPCA()
  # Exact posterior: every log-weight equals log p(x).
  log_w = model.log_weights(model.post_loc, model.post_scale, 100, [1, 2])
  np.testing.assert_allclose(log_w.mean(0), model.log_px, atol=2e-4)
  np.testing.assert_allclose(log_w.std(0), 0.0, atol=2e-4)
  # A wrong posterior: ELBO < log p(x) beyond Monte Carlo error.
  loc, scale = model.post_loc + 0.4, model.post_scale * 1.5
  log_w = model.log_weights(loc, scale, 20_000, [3, 4])
  elbo, se = log_w.mean(0), log_w.std(0) / math.sqrt(log_w.shape[0])
  assert np.all(elbo + 4 * se < model.log_px)


def test_iwae_error_shrinks_with_k():
  model = _PPCA()
  loc, scale = model.post_loc + 0.5, model.post_scale * 1.8
  errors = {}
  for k in (1, 10, 100, 1000):
    estimates = []
    for r in range(10):
      log_w = tf.constant(model.log_weights(loc, scale, k, [k, r]),
                          tf.float32)
      _, iw = objectives.chunked_log_weight_stats(
          lambda i, n, log_w=log_w: log_w[i * 100:i * 100 + n], k, 100,
          log_w.shape[1])
      estimates.append(iw.numpy())
    errors[k] = np.mean(np.abs(np.array(estimates) - model.log_px))
  assert errors[1] > errors[10] > errors[100] > errors[1000]
  assert errors[1000] < 0.1 * errors[1]


def test_gradient_estimators_unbiased_on_gaussian_quadratic():
  """E_q[f], q = N(mu, sigma^2), with a cost depending on the parameters.

  The cost depends on the parameters itself (like the VAE's
  -log p(x|z) + log q(z|x)):

      f(z) = sum a (z - c)^2 + log q(z),
      E_q f = sum a ((mu - c)^2 + sigma^2) - sum log sigma - (d/2) log(2 pi e),
      d/dmu = 2 a (mu - c),  d/dsigma = 2 a sigma - 1 / sigma,
      d/dc = -2 a (mu - c)   (only through f's own dependence on c).

  The score-function surrogate must differentiate f itself (a dropped
  `cost` term loses d/dc) and keep the advantage out of the gradient (a
  differentiated advantage adds E[log q grad f] != 0).
  """
  n = 50_000
  a = np.array([1.0, 0.5, 2.0], "float32")
  c0 = np.array([0.3, -1.0, 0.0], "float32")
  mu0 = np.array([0.5, 0.2, -0.4], "float32")
  sigma0 = np.array([1.0, 0.7, 0.3], "float32")
  expected = np.concatenate([2 * a * (mu0 - c0), 2 * a * sigma0 - 1 / sigma0,
                             -2 * a * (mu0 - c0)])
  # One copy of the parameters per draw gives per-draw gradients in one pass.
  mu = tf.Variable(np.tile(mu0, (n, 1)))
  sigma = tf.Variable(np.tile(sigma0, (n, 1)))
  c = tf.Variable(np.tile(c0, (n, 1)))
  variances = {}
  for estimator in ("pathwise", "score_function"):
    with tf.GradientTape() as tape:
      z = distributions.sample_diagonal_gaussian(mu, sigma, 1, [5, 6])
      if estimator == "score_function":
        z = tf.stop_gradient(z)
      log_q = distributions.diagonal_gaussian_log_prob(z, mu, sigma)
      cost = tf.reduce_sum(a * tf.square(z - c), axis=-1) + log_q
      if estimator == "pathwise":
        surrogate = objectives.pathwise_surrogate(cost)
      else:
        surrogate = objectives.score_function_surrogate(cost, log_q, 0.0)
      total = tf.reduce_sum(surrogate)
    grads = np.concatenate([g.numpy() for g in tape.gradient(
        total, [mu, sigma, c])], axis=1)  # [n, 9]
    mean = grads.mean(0)
    se = grads.std(0, ddof=1) / math.sqrt(n)
    np.testing.assert_array_less(np.abs(mean - expected), 4 * se,
                                 err_msg=estimator)
    variances[estimator] = grads.var(0, ddof=1)
  print("per-draw gradient variances:", variances)
  # d/dmu and d/dsigma: the score function is the noisier estimator.
  assert np.all(variances["score_function"][:6] > variances["pathwise"][:6])


def test_score_function_baseline_keeps_the_mean_and_lowers_the_variance():
  """F = z^2, z ~ N(mu = 0.5, 1): d/dmu E f = 2 mu = 1.

  The per-draw score term (f - b)(z - mu) has variance
  E[(f - b)^2 (z - mu)^2] - 1, quadratic in b with its minimum at
  b* = E[z^2 (z - mu)^2] = mu^2 + 3 = 3.25; b = E f = 1.25 lowers it by
  2 b b* - b^2 = 6.56 relative to b = 0.
  """
  n = 50_000
  mu = tf.Variable(tf.fill([n, 1], 0.5))
  sigma = tf.Variable(tf.fill([n, 1], 1.0))
  z = tf.stop_gradient(
      distributions.sample_diagonal_gaussian(mu, sigma, 1, [7, 8]))
  grads = {}
  for baseline in (0.0, 1.25):
    with tf.GradientTape() as tape:
      cost = tf.reduce_sum(tf.square(z), -1)  # E = mu^2 + sigma^2 = 1.25.
      log_q = distributions.diagonal_gaussian_log_prob(z, mu, sigma)
      total = tf.reduce_sum(
          objectives.score_function_surrogate(cost, log_q, baseline))
    grads[baseline] = g = tape.gradient(total, mu).numpy()[:, 0]
    assert abs(g.mean() - 1.0) < 4 * g.std() / math.sqrt(n)
  reduction = grads[0.0].var() - grads[1.25].var()
  print(f"variance reduction by the baseline: {reduction:.2f} (exact 6.56)")
  assert 5.0 < reduction < 8.0


def test_label_entropy_and_bounds():
  h = float(objectives.label_entropy(tf.constant([0, 1, 2, 3]), 4))
  np.testing.assert_allclose(h, math.log(4), rtol=1e-6)
  # Skewed, with an absent class: -(3/4 log 3/4 + 1/4 log 1/4) nats.
  h_skewed = float(objectives.label_entropy(tf.constant([0, 0, 0, 2]), 4))
  np.testing.assert_allclose(
      h_skewed, -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)), rtol=1e-6)
  b = objectives.information_bounds(2.0, 0.5, h)
  assert b["izx_upper"] == 2.0
  np.testing.assert_allclose(b["izy_lower"], math.log(4) - 0.5, rtol=1e-6)
  # A deterministic encoder (the sweep's baseline): no I(Z;X) bound.
  b = objectives.information_bounds(None, 0.5, h)
  assert set(b) == {"izy_lower"}
  np.testing.assert_allclose(b["izy_lower"], math.log(4) - 0.5, rtol=1e-6)


def test_flow_log_prob_and_monte_carlo_kl_of_an_affine_flow():
  """ZK = a * z0 + c with z0 ~ N(mu, s^2): qK = N(a mu + c, (|a| s)^2) exactly.

  log qK(zK) = log q0(z0) - sum_i log|a_i| must equal that Gaussian's density
  at every sample (a log-det added instead of subtracted fails), and the
  Monte Carlo KL(qK || N(0, I)) its closed form within 4 standard errors (a
  KL of the wrong sign is negative).
  """
  mu = np.array([[0.5, -1.0, 0.2]], np.float32)
  s = np.array([[0.8, 0.3, 1.5]], np.float32)
  a = np.array([2.0, -0.5, 1.2], np.float32)
  c = np.array([0.1, 0.4, -0.3], np.float32)
  z0 = distributions.sample_diagonal_gaussian(mu, s, 20_000, [9, 10])
  zk = a * z0 + c  # [S, 1, 3]
  log_det = tf.fill(tf.shape(zk)[:2], float(np.sum(np.log(np.abs(a)))))
  log_qk = objectives.flow_log_prob(
      distributions.diagonal_gaussian_log_prob(z0, mu, s), log_det)
  loc_k, scale_k = a * mu + c, np.abs(a) * s
  want = np.sum(-0.5 * np.log(2 * np.pi) - np.log(scale_k.astype(np.float64))
                - 0.5 * ((zk.numpy() - loc_k) / scale_k) ** 2, axis=-1)
  np.testing.assert_allclose(log_qk.numpy(), want, rtol=0, atol=1e-4)
  log_p = distributions.standard_normal_log_prob(zk)
  kl = objectives.monte_carlo_kl(log_qk, log_p).numpy()
  terms = objectives.log_density_ratio(log_qk, log_p).numpy()
  se = np.std(terms, 0) / math.sqrt(terms.shape[0])
  exact = distributions.kl_diagonal_gaussians(loc_k, scale_k).numpy()
  np.testing.assert_array_less(np.abs(kl - exact), 4 * se)
