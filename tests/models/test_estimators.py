"""Model-level tests of the gradient estimators and of the IWAE bound.

Score function against pathwise. Both estimators are unbiased for the gradient
of the same objective L = E_x E_{q(z0|x)}[-log p(x|zK) + beta (log qK - log p)],
so over many seeds their mean difference must vanish within its standard error.
The test goes through the model's own loss path (`per_example_loss`, with
loss.estimator = "score_function" and a baseline), on a VAE with two amortized
planar flows and a mixture prior (Monte Carlo KL) and on a VIB without flow
(closed-form KL). The two estimators share each seed (the same eps), so the
per-seed difference d = g_sf - g_pw has mean 0 and a smaller variance than
either; the score function's draws z0 depend only on the encoder's loc and
scale, so every other parameter (decoder, prior, flow, context head) must get
identical gradients from both.

Mutants caught (each applied once): the advantage differentiated (no
stop_gradient), the cost term dropped from the surrogate, z0 not detached for
the score function, the closed-form KL left out of the score-function
surrogate; for the importance-weighted part, the mean of the log-weights in
place of their logmeanexp, a missing -log K, the flow log-det with the wrong
sign, and a running logsumexp that does not rescale its sum.

Importance weighting. On the linear-Gaussian latent model z ~ N(0, I_k),
x|z ~ N(W^T z + b, s^2 I_D) (a VAE whose decoder is one Dense layer and whose
Gaussian likelihood has the fixed scale s),

    log p(x) = log N(x; b, W^T W + s^2 I)      (Tipping & Bishop 1999)
    p(z|x)   = N(S W (x - b) / s^2, S),        S = (I + W W^T / s^2)^-1,

so for the encoder's Gaussian q(z|x), ELBO = log p(x) - KL(q || p(z|x))
exactly, and `model.log_likelihood`'s importance-weighted estimate must move
from the ELBO (K = 1) to log p(x) as K grows (Burda et al. 2016).
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from vib_flows.app import model_builder

# ---------------------------------------------------------------- estimators

NUM_SEEDS = 40  # Independent gradient estimates (paired sf / pw).
SAMPLES_PER_SEED = 250  # loss.num_samples of each estimate.
Z_LIMIT = 5.0  # |mean d| / se(d) allowed per parameter.


def _small_config(kind, estimator):
  """A small model of `kind` with the estimator `estimator`.

  "vae": 2 amortized planar flows and a 3-component mixture prior (Monte Carlo
  KL, whose sampled part goes through the score term). "vib": no flow and a
  standard-normal prior (closed-form KL, differentiated exactly).
  """
  config = helpers.config("default")
  config.model.kind = kind
  config.model.likelihood = "bernoulli"
  config.model.latent_dim = 2
  config.model.encoder_hidden = (8,)
  config.model.decoder_hidden = (8,)
  config.model.context_dim = 4
  if kind == "vae":
    config.model.prior = "mixture"
    config.model.prior_components = 3
    config.flow.name = "planar"
    config.flow.num_flows = 2
    config.flow.amortized = True
  config.loss.estimator = estimator
  config.loss.num_samples = SAMPLES_PER_SEED
  return config


def _flat_gradient(model, batch, beta, seed):
  """Gradient [P] of mean_b surrogate_b over all trainable variables."""
  with tf.GradientTape() as tape:
    surrogate, _ = model.per_example_loss(batch, beta, seed)
    loss = tf.reduce_mean(surrogate)
  grads = tape.gradient(loss, model.trainable_variables)
  return tf.concat([
      tf.reshape(tf.zeros_like(v) if g is None else g, [-1])
      for g, v in zip(grads, model.trainable_variables)], axis=0)


def _paired_gradients(score_model, path_model, batch, beta, seeds):
  """[num_seeds, 2, P]: score-function and pathwise gradients, seed by seed."""

  @tf.function
  def run(seeds):
    return tf.map_fn(
        lambda seed: tf.stack([
            _flat_gradient(score_model, batch, beta, seed),
            _flat_gradient(path_model, batch, beta, seed)]),
        seeds, fn_output_signature=tf.float32)

  return run(seeds).numpy().astype(np.float64)


@pytest.mark.parametrize("kind", ["vae", "vib"])
def test_score_function_gradient_matches_pathwise_in_expectation(kind):
  info = helpers.data_info((6,), 3, None)
  score_model = model_builder.build_model(_small_config(kind, "score_function"),
                                          info)
  path_model = model_builder.build_model(_small_config(kind, "pathwise"), info)
  assert score_model.closed_form_kl == (kind == "vib")
  path_model.set_weights(score_model.get_weights())
  batch = {"x": tf.constant([[1, 0, 1, 1, 0, 0], [0, 1, 1, 0, 1, 1]],
                            tf.float32),
           "y": tf.constant([2, 0], tf.int32)}
  beta = 0.7
  # A baseline near the mean cost, as training's moving average would be.
  _, terms = path_model.per_example_loss(batch, beta, [0, 0])
  score_model.baseline.assign(float(tf.reduce_mean(terms["loss"])))
  seeds = tf.stack([tf.fill([NUM_SEEDS], 11), tf.range(NUM_SEEDS)], axis=1)
  grads = _paired_gradients(score_model, path_model, batch, beta, seeds)
  diff = grads[:, 0] - grads[:, 1]  # [N, P]
  mean = diff.mean(0)
  se = diff.std(0, ddof=1) / math.sqrt(NUM_SEEDS)
  pathwise_mean = np.abs(grads[:, 1].mean(0))
  # Parameters the sample z0 does not depend on get the same gradient from
  # both estimators (se = 0); rounding is allowed for by the last term.
  allowed = Z_LIMIT * se + 1e-5 * (1.0 + pathwise_mean)
  sizes = [int(np.prod(v.shape)) for v in score_model.trainable_variables]
  bounds = np.cumsum([0] + sizes)
  report = []
  for v, lo, hi in zip(score_model.trainable_variables, bounds[:-1],
                       bounds[1:]):
    z = np.abs(mean[lo:hi]) / np.maximum(se[lo:hi], 1e-12)
    report.append(f"{v.path}: max |mean d| = {np.abs(mean[lo:hi]).max():.2e}, "
                  f"max |mean d| / se = {z.max():.2f}")
  print("\n".join(report))
  bad = np.flatnonzero(np.abs(mean) > allowed)
  assert not bad.size, (
      f"{bad.size} gradient entries differ beyond {Z_LIMIT} standard errors:"
      "\n" + "\n".join(report))
  # The test can see a bias: the encoder's gradient is resolved to a few per
  # cent (otherwise it would pass any estimator).
  encoder = np.concatenate([
      np.arange(lo, hi) for v, lo, hi in zip(
          score_model.trainable_variables, bounds[:-1], bounds[1:])
      if "encoder/" in v.path and "context" not in v.path])
  resolution = np.linalg.norm(se[encoder]) / np.linalg.norm(
      pathwise_mean[encoder])
  print(f"encoder: ||se|| / ||mean pathwise gradient|| = {resolution:.3f}")
  assert resolution < 0.1


# ------------------------------------------------------ importance weighting

NOISE = 0.5  # s, the fixed scale of the Gaussian likelihood.
REPLICATES = 32  # Independent estimates per example.


def _linear_gaussian_vae(num_flows):
  """A VAE with a linear decoder W^T z + b and the likelihood N(., s^2 I)."""
  config = helpers.config("default")
  config.model.likelihood = "gaussian"
  config.model.gaussian_scale = NOISE
  config.model.latent_dim = 2
  config.model.encoder_hidden = (8,)
  config.model.decoder_hidden = ()
  config.flow.name = "planar"
  config.flow.num_flows = num_flows
  info = helpers.data_info((5,), None, None)
  model = model_builder.build_model(config, info)
  values = {"u": [0.6, -0.3], "w": [1.0, 0.8], "b": [0.3]}
  for layer in model.flow.flows:
    # Far enough from the identity that the log-dets matter.
    for weight in layer.trainable_weights:  # Every map alike.
      weight.assign(np.broadcast_to(values[weight.name], weight.shape))
  return model


def _exact_evidence_and_kl(model, x):
  """Log p(x) [N] and, for the encoder's Gaussian q0, KL(q0 || p(z|x)) [N]."""
  w = model.decoder.head.kernel.numpy().astype(np.float64)  # [k, D]
  b = model.decoder.head.bias.numpy().astype(np.float64)
  k, d = w.shape
  diff = x - b
  cov = w.T @ w + NOISE**2 * np.eye(d)
  _, logdet = np.linalg.slogdet(cov)
  log_px = -0.5 * (d * np.log(2 * np.pi) + logdet + np.einsum(
      "ni,ij,nj->n", diff, np.linalg.inv(cov), diff))
  precision = np.eye(k) + w @ w.T / NOISE**2  # Of p(z|x).
  post_mean = diff @ w.T @ np.linalg.inv(precision) / NOISE**2
  loc, scale, _ = model.encoder(tf.constant(x, tf.float32))
  loc, var = loc.numpy().astype(np.float64), scale.numpy().astype(np.float64)**2
  delta = post_mean - loc
  kl = 0.5 * (var @ np.diag(precision) - k
              + np.einsum("ni,ij,nj->n", delta, precision, delta)
              - np.linalg.slogdet(precision)[1] - np.log(var).sum(1))
  return log_px, kl


def _replicated_estimates(model, x, num_samples):
  """(elbo, iw) [N, REPLICATES] float64 from `model.log_likelihood`."""
  batch = tf.constant(np.repeat(x, REPLICATES, axis=0), tf.float32)
  elbo, iw = model.log_likelihood(batch, num_samples, [5, num_samples],
                                  chunk_size=64)
  shape = (x.shape[0], REPLICATES)
  return (elbo.numpy().astype(np.float64).reshape(shape),
          iw.numpy().astype(np.float64).reshape(shape))


@pytest.mark.parametrize("num_flows", [0, 2])
def test_importance_weighted_estimate_converges_to_exact_log_px(num_flows):
  model = _linear_gaussian_vae(num_flows)
  w = model.decoder.head.kernel.numpy().astype(np.float64)
  b = model.decoder.head.bias.numpy().astype(np.float64)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 2)) @ w + b + NOISE * rng.normal(size=(3, 5))
  log_px, kl = _exact_evidence_and_kl(model, x)
  gaps, ses = {}, {}
  for k in (1, 10, 100, 1000):
    elbo, iw = _replicated_estimates(model, x, k)
    gaps[k] = log_px - iw.mean(1)
    ses[k] = iw.std(1, ddof=1) / math.sqrt(REPLICATES)
    print(f"K={k}: log p(x) - IW = {gaps[k]}, se {ses[k]}")
    if k == 1:
      np.testing.assert_allclose(iw, elbo, rtol=1e-6)  # L_1 is the ELBO.
    # A lower bound in expectation: never above log p(x) beyond noise.
    np.testing.assert_array_less(-4 * ses[k], gaps[k])
  if num_flows == 0:
    # The ELBO of a Gaussian q is log p(x) - KL(q || p(z|x)), in closed form.
    print(f"KL(q || p(z|x)) = {kl}")
    np.testing.assert_array_less(np.abs(gaps[1] - kl), 4 * ses[1])
    elbo, _ = _replicated_estimates(model, x, 1000)
    elbo_se = elbo.std(1, ddof=1) / math.sqrt(REPLICATES)
    np.testing.assert_array_less(np.abs(log_px - elbo.mean(1) - kl),
                                 4 * elbo_se)
  # The gap closes: at K = 1000 the estimate is log p(x) within 4 standard
  # errors, and those are a few per cent of the K = 1 gap.
  np.testing.assert_array_less(np.abs(gaps[1000]), 4 * ses[1000])
  np.testing.assert_array_less(4 * ses[1000], 0.1 * np.abs(gaps[1]))
