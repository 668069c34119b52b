"""The statistics behind docs/estimators.md (the estimator variance study).

Known variance: draws g = mu + A eps, eps ~ N(0, I_Q), have Cov(g) = A A^T, so
tr Cov(g) = ||A||_F^2 and the estimate's variance is 2 tr(Cov^2) / N (Gaussian
draws); merged chunk moments must equal numpy's one-pass variance of all the
draws to rounding, even when the mean dwarfs the spread. The vectorized
per-seed gradients of the study must be the gradients of the model's loss,
seed by seed.

Mutants caught (each applied once): the merge without the d^2 n_a n_b / n
term; the trace divided by N instead of N - 1; ||E g|| without the
- tr Cov / N correction; the same seed for every draw of a chunk (M2 = 0).
"""


import numpy as np
import pytest
import tensorflow as tf

from experiments.research import estimator_variance
from experiments.research import gradient_moments
from tests import helpers
from vib_flows.app import model_builder


def _draws(rng, num, mean, mix):
  return mean + rng.normal(size=(num, mix.shape[1])) @ mix.T


def test_merged_trace_equals_one_pass_variance_with_a_large_mean():
  rng = np.random.default_rng(0)
  mix = rng.normal(size=(6, 4))
  draws = _draws(rng, 300, 1e4 * np.arange(1, 7), mix)
  moments = gradient_moments.Moments()
  for chunk in np.split(draws, [50, 120, 200]):  # Unequal chunks.
    moments.add_draws(chunk)
  summary = moments.summary()
  assert summary["draws"] == 300
  np.testing.assert_allclose(summary["trace"],
                             np.var(draws, axis=0, ddof=1).sum(), rtol=1e-9)
  np.testing.assert_allclose(moments.mean, draws.mean(0), rtol=1e-12)


def test_trace_matches_known_covariance():
  rng = np.random.default_rng(1)
  mix = rng.normal(size=(5, 3))
  cov = mix @ mix.T
  num, chunk = 20_000, 500
  moments = gradient_moments.Moments()
  for _ in range(num // chunk):
    moments.add_draws(_draws(rng, chunk, np.zeros(5), mix))
  summary = moments.summary()
  sd = np.sqrt(2 * np.trace(cov @ cov) / num)  # Of the trace estimate.
  assert abs(summary["trace"] - np.trace(cov)) < 5 * sd
  # The chunk-based standard error estimates that spread.
  assert 0.5 * sd < summary["trace_se"] < 2 * sd


def test_mean_norm_removes_the_noise_of_the_mean():
  # ||m||^2 ~ ||mu||^2 + tr Cov / N = 1 + 10: the correction must remove 10.
  rng = np.random.default_rng(2)
  dim, num = 1000, 100
  mu = np.zeros(dim)
  mu[0] = 1.0
  moments = gradient_moments.Moments()
  moments.add_draws(mu + rng.normal(size=(num, dim)))
  # sd of the corrected ||m||^2: sqrt(2 dim / num^2 + 4 ||mu||^2 / num) = 0.49.
  assert abs(moments.summary()["mean_norm"]**2 - 1.0) < 2.5


def test_bad_chunks_are_refused():
  moments = gradient_moments.Moments()
  with pytest.raises(ValueError, match="at least 2 draws"):
    moments.add_chunk(1, np.zeros(3), np.zeros(3))
  moments.add_draws(np.zeros((2, 3)))
  with pytest.raises(ValueError, match="parameters after chunks"):
    moments.add_draws(np.zeros((2, 4)))


def test_vectorized_chunk_moments_are_those_of_per_seed_gradients():
  config = helpers.config("default", **{
      "model.likelihood": "bernoulli", "model.latent_dim": 2,
      "model.encoder_hidden": (8,), "model.decoder_hidden": (8,),
      "flow.num_flows": 1, "loss.estimator": "score_function"})
  info = helpers.data_info((6,), None, None)
  model = model_builder.build_model(config, info)
  model.baseline.assign(3.0)
  batch = {"x": tf.constant([[1, 0, 1, 1, 0, 0], [0, 1, 1, 0, 1, 1]],
                            tf.float32)}
  beta = tf.constant(1.0)
  groups = estimator_variance.parameter_groups(model)
  assert set(groups) == {"encoder", "flow", "decoder"}
  seeds = tf.stack([tf.fill([4], 3), tf.range(4)], axis=1)
  got = estimator_variance.make_chunk_moments(model, batch, beta)(seeds)
  for name in groups:
    draws = np.stack([
        estimator_variance._flat_group_gradients(  # pylint: disable=protected-access
            model, groups, batch, beta, seed)[name].numpy()
        for seed in seeds])
    mean, m2 = got[name]
    np.testing.assert_allclose(mean.numpy(), draws.mean(0), rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(m2.numpy(), ((draws - draws.mean(0))**2).sum(0),
                               rtol=1e-3, atol=1e-8)
  # The draws differ: the encoder's score-function gradient is random.
  assert got["encoder"][1].numpy().sum() > 0
