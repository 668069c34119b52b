"""Tests of experiments/diagnostics.py against independent computations."""

import math
import types

import numpy as np
import pytest
import tensorflow as tf

from experiments import diagnostics
from tests import helpers
from vib_flows.app import model_builder


def _model(num_flows=0, name="planar", amortized=False):
  config = helpers.small_config(**{
      "model.latent_dim": 3, "flow.name": name, "flow.num_flows": num_flows,
      "flow.amortized": amortized})
  return model_builder.build_model(config, helpers.data_info((10,)))


def _images(n, seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 17, size=(n, 10)).astype(np.float32)


def test_active_units_is_the_variance_of_the_posterior_mean():
  model = _model()
  x = _images(40)
  result = diagnostics.active_units(model, x, num_samples=4000, batch_size=16)
  z_mean = model.encode(x, tf.constant([0, 0], tf.int32))["z_mean"].numpy()
  expected = z_mean.astype(np.float64).var(axis=0, ddof=1)
  np.testing.assert_allclose(result["activity_z0"], expected, rtol=1e-5)
  # No flow: zK = z0, so the Monte Carlo E[zK|x] estimates the same means.
  scale = model.encode(x, tf.constant([0, 0], tf.int32))["z_stddev"].numpy()
  mc_error = 2 * scale.max() / math.sqrt(4000)  # Per-example mean's error.
  np.testing.assert_allclose(result["activity_zk"], expected,
                             atol=4 * mc_error * np.sqrt(expected).max())
  assert result["active_units_z0"] == int(np.sum(expected > 0.01))


def test_identical_inputs_have_no_active_units():
  model = _model(num_flows=2, amortized=True)
  x = np.repeat(_images(1), 30, axis=0)
  result = diagnostics.active_units(model, x, num_samples=2000)
  assert result["active_units_z0"] == 0
  # E[zK|x] is the same for every x; only Monte Carlo noise varies, with
  # variance about scale^2 / 2000 (scale ~ 0.7 at initialization), far below
  # the 0.01 threshold.
  assert result["active_units_zk"] == 0
  with pytest.raises(ValueError, match=">= 2 inputs"):
    diagnostics.active_units(model, x[:1])


def test_split_elbo_matches_log_likelihood_and_bounds_it():
  model = _model(num_flows=2)
  x = _images(30)
  elbo, iw = diagnostics.split_elbo(model, x, num_samples=64, batch_size=7,
                                    chunk_size=16)
  # The same estimate in one batch, by the model's own method, in float64.
  rows = [model.log_likelihood(x[i:i + 7], 64, tf.constant([0, i], tf.int32),
                               chunk_size=16) for i in range(0, 30, 7)]
  np.testing.assert_allclose(
      elbo, np.concatenate([r[0].numpy() for r in rows]).mean(), rtol=1e-6)
  np.testing.assert_allclose(
      iw, np.concatenate([r[1].numpy() for r in rows]).mean(), rtol=1e-6)
  assert iw >= elbo
  one_elbo, one_iw = diagnostics.split_elbo(model, x, num_samples=1)
  assert one_iw == pytest.approx(one_elbo, abs=1e-4)  # K = 1: the same bound.


def test_aggregate_spread_matches_the_mixture_variance():
  model = _model()
  x = _images(60)
  result = diagnostics.aggregate_spread(model, x, num_samples=3000,
                                        batch_size=25)
  encoded = model.encode(x, tf.constant([0, 0], tf.int32))
  loc = encoded["z_mean"].numpy().astype(np.float64)
  scale = encoded["z_stddev"].numpy().astype(np.float64)
  assert result["encoder_scale_mean"] == pytest.approx(scale.mean(), rel=1e-6)
  # The aggregate q(z) = mean_x N(loc(x), scale(x)^2) has, per dimension,
  # variance Var_x(loc) + E_x[scale^2] (law of total variance).
  exact = np.sqrt(loc.var(axis=0) + (scale**2).mean(axis=0)).mean()
  # 180000 draws per dimension: the std estimate's relative error ~ 0.2 %.
  assert result["aggregate_std_z0"] == pytest.approx(exact, rel=0.01)
  assert result["aggregate_std_zk"] == pytest.approx(exact, rel=0.01)


def test_aggregate_spread_sees_a_flow_that_scales():
  model = _model(num_flows=2, name="planar")

  def tripled(*args):  # The model's samples with zK = 3 * (its flow's zK).
    samples = model._latent_samples(*args)  # pylint: disable=protected-access
    return dict(samples, zk=3.0 * samples["zk"])

  scaled = types.SimpleNamespace(_encode_params=model._encode_params,  # pylint: disable=protected-access
                                 _latent_samples=tripled)
  x = _images(40)
  plain = diagnostics.aggregate_spread(model, x, num_samples=50)
  result = diagnostics.aggregate_spread(scaled, x, num_samples=50)
  assert result["aggregate_std_z0"] == pytest.approx(
      plain["aggregate_std_z0"], rel=1e-6)
  assert result["aggregate_std_zk"] == pytest.approx(
      3 * plain["aggregate_std_zk"], rel=1e-5)


def test_log_det_error_is_small_for_a_flow_and_catches_a_wrong_one():
  model = _model(num_flows=3, name="sylvester_orthogonal", amortized=True)
  error, magnitude = diagnostics.log_det_error(model, _images(20))
  assert error < 1e-4 and magnitude >= 0.0

  def doubling_flow(z, context=None):  # Claims log-det 0; the truth is d log 2.
    del context
    return 2.0 * z, tf.zeros(tf.shape(z)[:1])

  wrong = types.SimpleNamespace(_encode_params=model._encode_params,  # pylint: disable=protected-access
                                flow=doubling_flow)
  error, magnitude = diagnostics.log_det_error(wrong, _images(20))
  assert error == pytest.approx(3 * math.log(2.0), rel=1e-6)
  assert magnitude == pytest.approx(3 * math.log(2.0), rel=1e-6)
