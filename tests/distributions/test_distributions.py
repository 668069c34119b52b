"""Tests of vib_flows.distributions against densities written out in numpy.

Also the package's names: those of its modules, and the Keras registrations
.keras files name.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from vib_flows import distributions
from vib_flows import flows
from vib_flows.distributions import likelihoods
from vib_flows.distributions import posterior
from vib_flows.distributions import priors
from vib_flows.distributions import support

tfd = tfp.distributions


def _np_gaussian_log_prob(z, loc, scale):
  """Log N(z; loc, diag scale^2) summed over the last axis (the formula)."""
  return np.sum(
      -0.5 * np.log(2 * np.pi) - np.log(scale)
      - 0.5 * ((z - loc) / scale) ** 2, axis=-1)


def test_closed_form_kl_matches_monte_carlo():
  rng = np.random.default_rng(1)
  n, batch, d = 100_000, 4, 5
  loc_q = rng.normal(size=(batch, d))
  scale_q = rng.uniform(0.2, 2.0, size=(batch, d))
  loc_p = rng.normal(size=(batch, d))
  scale_p = rng.uniform(0.5, 1.5, size=(batch, d))
  for lp, sp in ((0.0, 1.0), (loc_p, scale_p)):
    kl = distributions.kl_diagonal_gaussians(
        loc_q.astype("float32"), scale_q.astype("float32"),
        np.float32(lp) if np.isscalar(lp) else lp.astype("float32"),
        np.float32(sp) if np.isscalar(sp) else sp.astype("float32")).numpy()
    z = loc_q + scale_q * rng.normal(size=(n, batch, d))
    diff = (_np_gaussian_log_prob(z, loc_q, scale_q)
            - _np_gaussian_log_prob(z, lp, sp))  # [n, batch]
    mc, se = diff.mean(0), diff.std(0, ddof=1) / math.sqrt(n)
    assert kl.shape == (batch,)
    np.testing.assert_array_less(np.abs(kl - mc), 4 * se)


def test_log_q0_matches_gaussian_formula():
  rng = np.random.default_rng(2)
  loc = rng.normal(size=(3, 4)).astype("float32")
  scale = rng.uniform(0.1, 3.0, size=(3, 4)).astype("float32")
  z = rng.normal(size=(7, 3, 4)).astype("float32") * 2
  got = distributions.diagonal_gaussian_log_prob(z, loc, scale).numpy()
  assert got.shape == (7, 3)
  np.testing.assert_allclose(got, _np_gaussian_log_prob(z, loc, scale),
                             rtol=1e-5, atol=1e-5)
  prior = distributions.StandardNormalPrior(4)
  flat = z.reshape(-1, 4)
  np.testing.assert_allclose(prior.log_prob(flat).numpy(),
                             _np_gaussian_log_prob(flat, 0.0, 1.0),
                             rtol=1e-5, atol=1e-5)


def test_reparameterized_samples_seeded_and_distributed():
  loc = tf.constant([[1.0, -2.0]])
  scale = tf.constant([[0.5, 2.0]])
  seed = tf.constant([3, 4])
  z = distributions.sample_diagonal_gaussian(loc, scale, 20_000, seed)
  assert z.shape == (20_000, 1, 2)
  np.testing.assert_array_equal(
      z.numpy(),
      distributions.sample_diagonal_gaussian(loc, scale, 20_000, seed).numpy())
  other = distributions.sample_diagonal_gaussian(loc, scale, 20_000, [3, 5])
  assert not np.allclose(z.numpy(), other.numpy())
  np.testing.assert_allclose(z.numpy().mean(0), loc.numpy(), atol=0.05)
  np.testing.assert_allclose(z.numpy().std(0), scale.numpy(), rtol=0.03)
  with tf.GradientTape() as tape:
    tape.watch(scale)
    s = tf.reduce_sum(distributions.sample_diagonal_gaussian(loc, scale, 3,
                                                             seed))
  assert tape.gradient(s, scale) is not None


@pytest.mark.parametrize("jit_compile", [False, True])
def test_standard_normal_is_tf_stateless_normal(jit_compile):
  # The numbers of tf.random.stateless_normal, with XLA and without, for a
  # seed derived inside the function as the training step derives it.
  def both(step):
    seed = tf.random.experimental.stateless_fold_in(
        tf.constant([3, 4], tf.int32), step)
    return (distributions.stateless_standard_normal([2, 5, 7], seed),
            tf.random.stateless_normal([2, 5, 7], seed=seed))
  fn = tf.function(both, jit_compile=jit_compile)
  for step in (0, 1, 17):
    ours, reference = fn(tf.constant(step, tf.int64))
    np.testing.assert_array_equal(ours.numpy(), reference.numpy())


def test_standard_normal_barrier_only_under_xla():
  # Under XLA an optimization barrier keeps the seed scrambling out of the
  # per-element loop; outside XLA (SavedModels for the C++ runtime) no XLA op.
  def draw(seed):
    return distributions.stateless_standard_normal([4, 3], seed)
  spec = tf.TensorSpec([2], tf.int32)
  for jit_compile, expected in ((True, True), (False, False)):
    graph = tf.function(draw, jit_compile=jit_compile).get_concrete_function(
        spec).graph
    types = {op.type for op in graph.get_operations()}
    assert ("XlaOptimizationBarrier" in types) == expected, (jit_compile,
                                                             types)


def test_mixture_prior_log_prob_and_sample():
  prior = distributions.MixturePrior(3, num_components=4)
  rng = np.random.default_rng(3)
  prior.locs.assign(rng.normal(size=(4, 3)))
  prior.raw_scales.assign(rng.normal(size=(4, 3)))
  prior.logits.assign(rng.normal(size=(4,)))
  z = rng.normal(size=(6, 3)).astype("float32")
  locs, logits = prior.locs.numpy(), prior.logits.numpy()
  scales = np.log1p(np.exp(prior.raw_scales.numpy())) + 1e-4
  log_pi = logits - np.log(np.sum(np.exp(logits)))
  comp = _np_gaussian_log_prob(z[:, None], locs[None], scales[None])  # [6, 4]
  expected = np.log(np.sum(np.exp(log_pi + comp), axis=1))
  np.testing.assert_allclose(prior.log_prob(z).numpy(), expected, rtol=1e-5)
  assert len(prior.trainable_variables) == 3
  s = prior.sample(5000, tf.constant([1, 2]))
  assert s.shape == (5000, 3)
  np.testing.assert_allclose(
      s.numpy().mean(0), np.exp(log_pi) @ locs, atol=0.1)


def test_flow_prior_density_is_change_of_variables():
  prior = distributions.FlowPrior(4, "real_nvp", 2, {"hidden_units": 8})
  u = tf.random.stateless_normal([5, 4], seed=[1, 1])
  z, log_det = prior.stack(u)
  expected = _np_gaussian_log_prob(u.numpy(), 0.0, 1.0) - log_det.numpy()
  np.testing.assert_allclose(prior.log_prob(z).numpy(), expected, rtol=1e-4,
                             atol=1e-4)
  assert prior.sample(7, tf.constant([0, 1])).shape == (7, 4)
  with pytest.raises(ValueError, match="invertible"):
    distributions.FlowPrior(4, "planar")


def test_likelihood_log_probs_match_formulas():
  rng = np.random.default_rng(4)
  # Bernoulli.
  lik = distributions.BernoulliLikelihood((2, 3))
  logits = rng.normal(size=(5, 6)).astype("float32")
  x = rng.integers(0, 2, size=(5, 2, 3)).astype("float32")
  p = 1 / (1 + np.exp(-logits))
  xf = x.reshape(5, 6)
  expected = np.sum(xf * np.log(p) + (1 - xf) * np.log(1 - p), axis=1)
  np.testing.assert_allclose(lik.log_prob(logits, x).numpy(), expected,
                             rtol=1e-5)
  assert lik.mean(logits).shape == (5, 2, 3)
  # Categorical over L levels.
  lev = 5
  lik = distributions.CategoricalLikelihood((6,), lev)
  logits = rng.normal(size=(5, 6 * lev)).astype("float32")
  x = rng.integers(0, lev, size=(5, 6)).astype("float32")
  lg = logits.reshape(5, 6, lev)
  log_softmax = lg - np.log(np.sum(np.exp(lg), -1, keepdims=True))
  expected = np.take_along_axis(
      log_softmax, x.astype(int)[..., None], -1)[..., 0].sum(1)
  np.testing.assert_allclose(lik.log_prob(logits, x).numpy(), expected,
                             rtol=1e-5)
  np.testing.assert_allclose(
      lik.mean(logits).numpy(), (np.exp(log_softmax) * np.arange(lev)).sum(-1),
      rtol=1e-5)
  np.testing.assert_allclose(lik.normalize(x).numpy(), x / (lev - 1))
  # Gaussian, fixed and learned scale.
  mu = rng.normal(size=(5, 6)).astype("float32")
  x = rng.uniform(size=(5, 6)).astype("float32")
  fixed = distributions.GaussianLikelihood((6,), scale=0.3)
  np.testing.assert_allclose(fixed.log_prob(mu, x).numpy(),
                             _np_gaussian_log_prob(x, mu, 0.3), rtol=1e-5)
  assert not fixed.trainable_variables
  learned = distributions.GaussianLikelihood((6,), scale=0.0)
  assert len(learned.trainable_variables) == 1
  s = learned.scale().numpy()
  np.testing.assert_allclose(learned.log_prob(mu, x).numpy(),
                             _np_gaussian_log_prob(x, mu, s), rtol=1e-5)
  # Labels.
  labels = distributions.CategoricalLabels(4)
  logits = rng.normal(size=(5, 4)).astype("float32")
  y = np.array([0, 3, 1, 2, 3])
  ls = logits - np.log(np.sum(np.exp(logits), -1, keepdims=True))
  np.testing.assert_allclose(labels.log_prob(logits, y).numpy(),
                             ls[np.arange(5), y], rtol=1e-5)


def test_bernoulli_log_prob_is_tfps_for_grey_values_and_large_logits():
  """The formula x l - softplus(l) against TFP's Bernoulli and float64 numpy.

  Grey values (the cross-entropy of a [0, 1] image) and logits up to 100
  in size, where the log-probabilities of one outcome underflow and those of
  the other are -|l|.
  """
  rng = np.random.default_rng(9)
  lik = distributions.BernoulliLikelihood((4, 5))
  logits = np.concatenate([
      rng.normal(scale=3.0, size=(6, 20)),
      np.tile([[-100.0, -30.0, -5.0, 0.0, 5.0, 30.0, 100.0, 1e-3, -1e-3,
                17.0] * 2], (2, 1))]).astype("float32")
  x = np.concatenate([rng.uniform(size=(6, 20)),
                      rng.integers(0, 2, size=(2, 20))]).astype("float32")
  l64, x64 = logits.astype("float64"), x.astype("float64")
  # log sigmoid(l) = -logaddexp(0, -l), in float64.
  expected = np.sum(-x64 * np.logaddexp(0.0, -l64)
                    - (1.0 - x64) * np.logaddexp(0.0, l64), axis=1)
  got = lik.log_prob(logits, x.reshape(8, 4, 5)).numpy()
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
  tfp_value = tfd.Independent(
      tfd.Bernoulli(logits=logits, dtype=tf.float32), 1).log_prob(x).numpy()
  np.testing.assert_allclose(got, tfp_value, rtol=1e-5, atol=1e-4)
  # d/dl = x - sigmoid(l), the gradient the decoder trains with.
  logits_t = tf.constant(logits)
  with tf.GradientTape() as tape:
    tape.watch(logits_t)
    total = tf.reduce_sum(lik.log_prob(logits_t, x))
  np.testing.assert_allclose(tape.gradient(total, logits_t).numpy(),
                             x64 - 1.0 / (1.0 + np.exp(-l64)), atol=1e-6)


def test_validate_refuses_values_outside_the_support():
  bern = distributions.BernoulliLikelihood((3,))
  bern.validate(np.array([[0, 1, 0.5]]))
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    bern.validate(np.array([[0, 1, 2]]))
  cat = distributions.CategoricalLikelihood((3,), 17)
  cat.validate(np.array([[0, 16, 3]], "float32"))
  with pytest.raises(ValueError, match="0..16"):
    cat.validate(np.array([[0, 17, 3]], "float32"))
  with pytest.raises(ValueError, match="non-integer"):
    cat.validate(np.array([[0, 1.5, 3]], "float32"))
  for lik in (bern, cat, distributions.GaussianLikelihood((3,), 1.0)):
    with pytest.raises(ValueError, match="NaN"):
      lik.validate(np.array([[0, np.nan, 0]]))
  distributions.validate_labels(np.array([0, 9]), 10)
  with pytest.raises(ValueError, match="0..9"):
    distributions.validate_labels(np.array([0, 10]), 10)
  with pytest.raises(ValueError, match="0..9"):
    distributions.validate_labels(np.array([-1, 3]), 10)


def test_factories_list_valid_names():
  with pytest.raises(ValueError, match="bernoulli, categorical, gaussian"):
    distributions.make_likelihood("poisson", (3,))
  with pytest.raises(ValueError, match="flow, mixture, standard_normal"):
    distributions.make_prior("laplace", 3)
  assert "real_nvp" in flows.names()


def test_distributions_package_keeps_the_module_names():
  assert distributions.Prior is priors.Prior
  assert distributions.make_likelihood is likelihoods.make_likelihood
  assert distributions.sample_diagonal_gaussian is (
      posterior.sample_diagonal_gaussian)
  assert distributions.validate_labels is support.validate_labels
  assert distributions.prior_names() == ("flow", "mixture", "standard_normal")
  assert distributions.likelihood_names() == (
      "bernoulli", "categorical", "gaussian")
  # .keras files name classes by their registered names: unchanged.
  for cls in (distributions.StandardNormalPrior, distributions.MixturePrior,
              distributions.FlowPrior, distributions.BernoulliLikelihood,
              distributions.CategoricalLikelihood,
              distributions.GaussianLikelihood,
              distributions.CategoricalLabels):
    assert keras.saving.get_registered_name(cls) == f"vib_flows>{cls.__name__}"
    assert keras.saving.get_registered_object(
        f"vib_flows>{cls.__name__}") is cls


def test_likelihood_validate_delegates_to_the_support_checks():
  bernoulli = distributions.make_likelihood("bernoulli", (3,))
  with pytest.raises(ValueError, match=r"needs data in \[0, 1\]"):
    bernoulli.validate(np.array([[0.0, 1.5, 0.0]]))
  with pytest.raises(ValueError, match="bernoulli likelihood data: 1 values"):
    bernoulli.validate(np.array([[0.0, np.inf, 0.0]]))
  categorical = distributions.make_likelihood("categorical", (3,), 4)
  categorical.validate(np.array([[0.0, 3.0, 1.0]]))
  with pytest.raises(ValueError, match=r"levels in 0..3 \(model.num_levels"):
    categorical.validate(np.array([[0.0, 4.0, 1.0]]))
