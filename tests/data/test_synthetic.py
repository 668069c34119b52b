"""Synthetic data from a known 2-D latent model and its exact log p(x).

References independent of the code under test: the closed form
log N(x; b, W W^T + s^2 I) of a linear-Gaussian model (scipy), a finer and
wider quadrature grid, the definition of the true model written out in numpy,
and the exact log p(x) as the target of the importance-weighted estimator.
"""

import dataclasses
import json
import os

import numpy as np
import pytest
from scipy import stats
import tensorflow as tf

from tests import helpers
from vib_flows import data
from vib_flows import networks
from vib_flows import quadrature
from vib_flows.app import config_checks
from vib_flows.app import model_builder
from vib_flows.data import synthetic


# ------------------------------------------------------------- quadrature
def test_quadrature_matches_linear_gaussian_closed_form():
  """x|z ~ N(W z + b, s^2 I), z ~ N(0, I): log p(x) = log N(x; b, WW^T+s^2I)."""
  rng = np.random.default_rng(3)
  dim, scale = 5, 0.5
  w = rng.standard_normal((dim, 2))
  b = rng.standard_normal(dim)
  z = rng.standard_normal((7, 2)) * 1.5
  x = z @ w.T + b + scale * rng.standard_normal((7, dim))

  def gaussian_log_likelihood(x_batch, z_grid):
    mean = tf.matmul(z_grid, tf.constant(w.T)) + b  # [C, dim]
    sq = tf.reduce_sum((x_batch[:, None, :] - mean[None]) ** 2, axis=-1)
    return -0.5 * sq / scale**2 - dim * np.log(scale * np.sqrt(2 * np.pi))

  got = quadrature.log_marginal_likelihood(gaussian_log_likelihood, x).numpy()
  covariance = w @ w.T + scale**2 * np.eye(dim)
  want = stats.multivariate_normal(b, covariance).logpdf(x)
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("variant", synthetic.VARIANTS)
def test_finer_wider_grid_changes_exact_log_px_by_less_than_1e_3(variant):
  name = synthetic.PREFIX + variant
  x = synthetic.sample(variant, 40, [5, 6]).numpy()
  default = synthetic.exact_log_likelihood(name, x)
  finer = synthetic.exact_log_likelihood(
      name, x, num_points=2 * quadrature.NUM_POINTS,
      bound=quadrature.BOUND + 2.0)
  assert np.all(np.isfinite(default))
  np.testing.assert_allclose(default, finer, rtol=0, atol=1e-3)


def test_grid_posterior_is_normalized_and_symmetric_for_bimodal():
  """The bimodal model does not see the sign of z1.

  p(z1, z2|x) = p(-z1, z2|x).
  """
  x = synthetic.sample("bimodal", 3, [1, 1]).numpy()
  axis, log_density = quadrature.log_posterior(
      synthetic.bernoulli_log_likelihood("bimodal"), x, num_points=100)
  h = axis[1] - axis[0]
  density = np.exp(log_density)
  np.testing.assert_allclose(density.sum(axis=(1, 2)) * h**2, 1.0, atol=1e-9)
  np.testing.assert_allclose(density, density[:, ::-1, :], atol=1e-9)


# -------------------------------------------------------------- the data
def _numpy_logits(z, variant):
  """The true network written out in numpy (float64)."""
  weights = synthetic.true_weights(variant)
  z1, z2 = z[:, 0], z[:, 1]
  features = {"banana": np.stack([z1 / 4, z2 - 0.6 * z1**2], -1),
              "bimodal": np.stack([z1**2 / 2, z2], -1),
              "ring": 0.5 * (z1**2 + z2**2)[:, None]}[variant]
  hidden = np.tanh(features @ weights["w1"] + weights["b1"])
  return hidden @ weights["w2"] + weights["b2"]


@pytest.mark.parametrize("variant", synthetic.VARIANTS)
def test_true_logits_match_the_written_out_network(variant):
  z = np.random.default_rng(0).standard_normal((9, 2))
  np.testing.assert_allclose(
      synthetic.true_logits(z, variant).numpy(), _numpy_logits(z, variant),
      rtol=1e-12, atol=1e-12)


def test_draws_have_the_true_pixel_means():
  """mean_n x_nd vs E_z[sigmoid(f_d(z))] by quadrature.

  Within 5 standard errors.
  """
  variant, n = "banana", 20_000
  x = synthetic.FreshDraws(variant)(n, tf.constant([9, 9], tf.int64)).numpy()
  assert set(np.unique(x)) <= {0.0, 1.0}
  _, z, log_weight = quadrature.grid()
  probs = 1 / (1 + np.exp(-_numpy_logits(z, variant)))
  want = np.exp(log_weight) @ probs
  standard_error = np.sqrt(want * (1 - want) / n)
  assert np.max(np.abs(x.mean(0) - want) / standard_error) < 5.0


def test_splits_are_fixed_and_independent_of_config_seed():
  first = data.load(helpers.config("vae_synthetic", seed=0))
  second = data.load(helpers.config("vae_synthetic", seed=7))
  for name in ("train", "validation", "test"):
    np.testing.assert_array_equal(getattr(first, name).x,
                                  getattr(second, name).x)
  assert first.test.x.shape == (synthetic.NUM_TEST, synthetic.NUM_PIXELS)
  assert not np.array_equal(first.test.x, first.validation.x)
  assert first.info.preprocess == "static"
  assert first.train.sampler is not None and first.test.sampler is None


def _epoch(dataset):
  return np.concatenate([b["x"].numpy() for b in dataset])


def _sorted_rows(x):
  """The examples of binary x [N, 64] as a sorted array: order-free equality."""
  return np.sort(np.packbits(x.astype(bool), axis=1).view(">u8").ravel())


def test_training_pipeline_draws_a_fresh_set_each_epoch():
  config = helpers.config("vae_synthetic")
  splits = data.load(config)

  def make(seed):
    return data.make_dataset_fn(
        splits.train, 500, True, seed, config, splits.info)()

  dataset = make(11)
  first = _epoch(dataset)
  assert first.shape == splits.train.x.shape
  np.testing.assert_array_equal(first, _epoch(make(11)))  # Seeded.
  # New examples, not the same ones in another order: for a new epoch's
  # seed, for the same dataset iterated again, and against the fixed draw.
  for other in (_epoch(make(12)), _epoch(dataset), splits.train.x):
    assert not np.array_equal(_sorted_rows(first), _sorted_rows(other))
  evaluation = data.make_dataset_fn(splits.test, 500, False, 11, config,
                                    splits.info)()
  np.testing.assert_array_equal(_epoch(evaluation), splits.test.x)


# ------------------------------------------------------------ the configs
@pytest.mark.parametrize("overrides,message", [
    ({"data.name": "synthetic:moon"},
     "Unknown synthetic data set 'synthetic:moon'.*synthetic:banana.*"
     "synthetic:bimodal.*synthetic:ring"),
    ({"model.likelihood": "categorical"}, "must be 'bernoulli'"),
    ({"data.preprocess": "levels"}, "data.preprocess must keep them"),
])
def test_data_that_do_not_fit_are_refused(overrides, message):
  with pytest.raises(ValueError, match=message):
    data.load(helpers.config("vae_synthetic", **overrides))


@pytest.mark.parametrize("overrides,message", [
    ({"model.decoder": "fixed"},
     "Unknown model.decoder 'fixed'.*learned.*true"),
    ({"data.name": "digits"},
     "needs data from a known model.*synthetic:banana"),
    ({"model.latent_dim": 3}, "needs model.latent_dim = 2.*got 3"),
    ({"data.name": "synthetic:moon"}, "Unknown synthetic data set"),
])
def test_true_decoder_configs_that_cannot_work_are_refused(overrides, message):
  with pytest.raises(ValueError, match=message):
    config_checks.validate(helpers.config("vae_synthetic_true", **overrides))


@pytest.mark.parametrize("name", ["vae_synthetic", "vae_synthetic_true"])
def test_shipped_synthetic_configs_are_valid(name):
  config_checks.validate(helpers.config(name))


def test_true_decoder_is_the_true_network_and_not_trained():
  config = helpers.config("vae_synthetic_true")
  model = model_builder.build_model(config, data.load(config).info)
  assert isinstance(model.decoder, networks.TrueDecoder)
  assert not model.decoder.trainable_weights
  decoder_ids = {id(v) for v in model.decoder.weights}
  encoder_ids = {id(v) for v in model.encoder.trainable_weights}
  assert {id(v) for v in model.trainable_weights} == encoder_ids
  assert not decoder_ids & encoder_ids
  z = np.random.default_rng(1).standard_normal((5, 2)).astype(np.float32)
  np.testing.assert_allclose(model.decoder(z).numpy(),
                             _numpy_logits(z.astype(np.float64), "banana"),
                             rtol=1e-5, atol=1e-5)


# ----------------------------------------- the evaluator vs ground truth
def test_importance_weighted_estimate_matches_exact_log_px():
  """IWAE (K = 5000) with the true decoder converges to the exact log p(x).

  q(z|x) = N(0, 1.3^2 I) for every x (encoder heads zeroed): wider than the
  prior, so the weights p(x, z) / q(z|x) are bounded and the estimate's
  bias (about Var(w) / 2K) is far below its standard error. The ELBO of this
  q lies well below log p(x).
  """
  config = helpers.config("vae_synthetic_true")
  splits = data.load(config)
  model = model_builder.build_model(config, splits.info)
  for head in (model.encoder.loc_head, model.encoder.scale_head):
    head.kernel.assign(tf.zeros_like(head.kernel))
  model.encoder.loc_head.bias.assign(tf.zeros([2]))
  model.encoder.scale_head.bias.assign(
      tf.fill([2], float(np.log(np.expm1(1.3 - config.model.min_scale)))))
  x = splits.test.x[:200]
  elbo, iw = tf.function(model.log_likelihood)(
      tf.constant(x), 5000, tf.constant([3, 4]), 500)
  exact = splits.exact_log_likelihood(x)
  diff = iw.numpy() - exact
  standard_error = diff.std(ddof=1) / np.sqrt(diff.size)
  # 1e-3 nats: the quadrature's accuracy (the grid refinement test).
  assert abs(diff.mean()) < 4 * standard_error + 1e-3, (
      diff.mean(), standard_error)
  assert standard_error < 0.05
  assert np.mean(exact - elbo.numpy()) > 1.0


def test_exact_test_metrics():
  splits = data.load(helpers.config("vae_synthetic"))
  splits = dataclasses.replace(  # 50 test examples keep the test fast.
      splits, test=data.Split(splits.test.x[:50]))
  exact = float(np.mean(splits.exact_log_likelihood(splits.test.x)))
  metrics = data.exact_test_metrics(
      splits, {"test_elbo": exact - 0.5, "test_log_likelihood": exact - 0.1})
  assert metrics["test_exact_log_likelihood"] == pytest.approx(exact)
  assert metrics["test_exact_gap"] == pytest.approx(0.5)
  assert metrics["test_exact_iw_gap"] == pytest.approx(0.1)
  digits = data.load(helpers.config("default"))
  assert data.exact_test_metrics(digits, {"test_elbo": 0.0}) == {}


@pytest.mark.slow
def test_command_line_run_on_synthetic_data(tmp_path):
  workdir = str(tmp_path / "run")
  helpers.run_main([
      "--config=configs/vae_synthetic_true.py", f"--workdir={workdir}",
      "--config.train.num_epochs=1", "--config.eval.num_importance_samples=50",
      "--config.export.enabled=False",
  ])
  metrics = helpers.read_json(os.path.join(workdir, "metrics.json"))
  assert metrics["num_test_examples"] == synthetic.NUM_TEST
  config = json.load(open(os.path.join(workdir, "config.json")))
  assert config["model"]["decoder"] == "true"
  splits = data.load(helpers.config("vae_synthetic_true"))
  exact = data.exact_test_metrics(splits, metrics)
  assert exact["test_exact_gap"] > 0  # ELBO <= log p(x) with the true decoder.
