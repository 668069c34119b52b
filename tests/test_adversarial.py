"""FGSM examples and the robust accuracy of the VIB (vib_flows.adversarial)."""

import math
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from vib_flows import adversarial
from vib_flows import data as data_lib
from vib_flows.app import model_builder

SEED = tf.constant([3, 4], tf.int32)


def _vib(input_dim=8, num_classes=3, num_flows=1, beta=1e-3):
  config = helpers.small_config("vib", **{
      "model.encoder_hidden": (32,), "model.decoder_hidden": (32,),
      "flow.num_flows": num_flows, "flow.amortized": True, "loss.beta": beta})
  info = helpers.data_info((input_dim,), num_classes, None,
                           preprocess="scale")
  return model_builder.build_model(config, info)


def _reference_gradient(model, x, y, num_samples, index, objective):
  """grad_x sum_b objective(logits [S, B, C], one-hot y [B, C]) -> [B].

  The logits of `predict_proba`'s posterior samples (same seed and example
  indices), computed from the model's parts, apart from `adversarial`.
  """
  x = tf.constant(x, tf.float32)
  with tf.GradientTape() as tape:
    tape.watch(x)
    loc, scale, context = model._encode_params(x)
    samples = model._latent_samples(loc, scale, context, num_samples, SEED,
                                    example_index=index)
    logits = model._logits(samples["zk"], num_samples)  # [S, B, C]
    total = tf.reduce_sum(objective(logits, tf.one_hot(y, model.num_classes)))
  return tape.gradient(total, x).numpy()


def _log_predictive_gradient(model, x, y, num_samples, index):
  """Reference grad_x log p(y|x), written apart from `adversarial.fgsm`.

  log p(y|x) = logsumexp_s log p(y|zK_s) - log S.
  """
  def log_predictive(logits, one_hot):
    log_p_s = tf.reduce_sum(tf.nn.log_softmax(logits) * one_hot, -1)
    return tf.reduce_logsumexp(log_p_s, 0) - math.log(num_samples)
  return _reference_gradient(model, x, y, num_samples, index, log_predictive)


def test_fgsm_steps_epsilon_down_the_log_likelihood_within_the_data_range():
  model = _vib()
  rng = np.random.default_rng(0)
  x = rng.uniform(size=(16, 8)).astype("float32")
  x[:, :2] = 0.0  # Pixels at the edges of [0, 1]: some steps are clipped.
  x[:, 2] = 1.0
  x[:, 3] = 0.02  # Within epsilon of the edge: clipped part of the way.
  y = rng.integers(0, 3, size=16).astype("int32")
  index = tf.range(100, 116)
  eps, num_samples = 0.05, 5
  x_adv = adversarial.fgsm(model, x, y, eps, SEED, num_samples,
                           example_index=index).numpy()
  assert x_adv.shape == x.shape and x_adv.dtype == np.float32
  assert np.all(np.abs(x_adv - x) <= eps + 1e-6)
  assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0

  grad = _log_predictive_gradient(model, x, y, num_samples, index)
  # Pixels whose reference gradient is clearly non-zero (its sign is defined
  # beyond float32 rounding).
  clear = np.abs(grad) > 1e-3 * np.abs(grad).max(axis=1, keepdims=True)
  assert clear.mean() > 0.8
  # Down the log-likelihood, clipped to [0, 1].
  expected = np.clip(x - eps * np.sign(grad), 0.0, 1.0)
  np.testing.assert_allclose(x_adv[clear], expected[clear], atol=1e-6)
  # Away from the edges, every clear pixel moves by exactly epsilon.
  inside = clear & (x >= eps) & (x <= 1.0 - eps)
  assert inside.sum() > 50
  np.testing.assert_allclose(np.abs(x_adv - x)[inside], eps, rtol=1e-5)
  assert np.all(np.sign(x_adv - x)[inside] == -np.sign(grad)[inside])
  # Both edges were reached, and clipping happened.
  assert np.any(x_adv[:, :2] == 0.0) and np.any(x_adv[:, :2] > 0.0)
  assert np.any(x_adv[:, 2] == 1.0) and np.any(x_adv[:, 2] < 1.0)
  assert np.any(x_adv[:, 3] == 0.0)

  # Vectorized, yet each example's step is its own: one example alone (with
  # its index) gets the same step as inside the batch.
  for b in (0, 9):
    alone = adversarial.fgsm(model, x[b:b + 1], y[b:b + 1], eps, SEED,
                             num_samples, example_index=index[b:b + 1])
    np.testing.assert_allclose(alone.numpy()[0], x_adv[b], atol=1e-6)
  # No clipping asked: steps of exactly epsilon leave [0, 1].
  free = adversarial.fgsm(model, x, y, eps, SEED, num_samples,
                          example_index=index, clip=None).numpy()
  assert free.min() < 0.0 and free.max() > 1.0


def test_pgd_of_one_full_step_is_fgsm_and_stays_in_the_budget():
  model = _vib()
  rng = np.random.default_rng(2)
  x = rng.uniform(size=(16, 8)).astype("float32")
  x[:, 0] = 0.01  # Near the data range's edge: the range bounds the steps.
  y = rng.integers(0, 3, size=16).astype("int32")
  index = tf.range(16)
  eps, num_samples = 0.1, 3
  one = adversarial.pgd(model, x, y, eps, SEED, num_samples, steps=1,
                        step_size=eps, example_index=index)
  np.testing.assert_array_equal(
      one.numpy(), adversarial.fgsm(model, x, y, eps, SEED, num_samples,
                                    example_index=index).numpy())
  # Ten steps of 0.05 (5 epsilon in all) end inside the budget and [0, 1].
  many = adversarial.pgd(model, x, y, eps, SEED, num_samples, steps=10,
                         step_size=0.05, example_index=index).numpy()
  assert np.all(np.abs(many - x) <= eps + 1e-6)
  assert many.min() >= 0.0 and many.max() <= 1.0
  assert np.any(np.abs(many - x) > eps - 1e-6)  # The budget was used.
  with pytest.raises(ValueError, match="steps >= 1"):
    adversarial.pgd(model, x, y, eps, SEED, num_samples, steps=0)


def test_pgd_finds_what_one_fgsm_step_jumps_over():
  x = tf.constant([[0.5, 0.3], [0.5, 0.7]])
  y = tf.constant([0, 0])
  split = data_lib.Split(x.numpy(), y.numpy())
  model = helpers.BumpClassifier()
  fgsm_accuracy = adversarial.robust_accuracy(model, split, (0.2,), 1, SEED)
  # 20 steps of 2.5 * 0.2 / 20 = 0.025: to 0.525, then 0.55 and back.
  pgd_accuracy = adversarial.robust_accuracy(model, split, (0.2,), 1, SEED,
                                             pgd_steps=20)
  assert fgsm_accuracy == {0.2: 1.0} and pgd_accuracy == {0.2: 0.0}
  x_adv = adversarial.pgd(model, x, y, 0.2, SEED, 1).numpy()
  assert np.all(np.abs(x_adv[:, 0] - 0.5375) < 0.02)
  np.testing.assert_array_equal(x_adv[:, 1], x.numpy()[:, 1])  # No gradient.
  with pytest.raises(ValueError, match="pgd_steps"):
    adversarial.robust_accuracy(model, split, (0.2,), 1, SEED, pgd_steps=-1)


def test_the_margin_loss_finds_what_a_saturated_cross_entropy_hides():
  # y = 1, x_0 = 0.7 and 0.8: both far inside class 1, with saturated
  # softmaxes (helpers.SaturatedClassifier); epsilon 0.25 can cross 0.5 for
  # the first only.
  x = tf.constant([[0.7, 0.3], [0.8, 0.3]])
  y = tf.constant([1, 1])
  split = data_lib.Split(x.numpy(), y.numpy())
  model = helpers.SaturatedClassifier()
  grad = adversarial._loss_gradient(model, x, y, SEED, 1, None)
  assert np.all(grad.numpy() == 0.0)  # Cross-entropy: nothing to follow.
  for steps in (0, 20):
    assert adversarial.robust_accuracy(
        model, split, (0.25,), 1, SEED, pgd_steps=steps) == {0.25: 1.0}
    # The logit gap falls along -x_0: below 0.5 for the first example.
    assert adversarial.robust_accuracy(
        model, split, (0.25,), 1, SEED, pgd_steps=steps,
        loss="margin") == {0.25: 0.5}
  x_adv = adversarial.fgsm(model, x, y, 0.25, SEED, 1, loss="margin").numpy()
  np.testing.assert_allclose(x_adv[:, 0], [0.45, 0.55], atol=1e-6)
  np.testing.assert_array_equal(x_adv[:, 1], x.numpy()[:, 1])
  with pytest.raises(ValueError, match="attack loss 'hinge'.*margin"):
    adversarial.robust_accuracy(model, split, (0.1,), 1, SEED, loss="hinge")


def test_margin_fgsm_steps_up_the_mean_logit_gap_of_the_vib():
  model = _vib()
  rng = np.random.default_rng(4)
  x = rng.uniform(0.2, 0.8, size=(16, 8)).astype("float32")
  y = rng.integers(0, 3, size=16).astype("int32")
  index = tf.range(16)
  num_samples = 4
  # Reference: the gap averaged over predict_proba's posterior samples.
  def mean_gap(logits, one_hot):  # [S, B, C], [B, C] -> [B]
    true = tf.reduce_sum(logits * one_hot, -1)
    others = tf.reduce_max(logits - 1e9 * one_hot, -1)
    return tf.reduce_mean(others - true, 0)
  grad = _reference_gradient(model, x, y, num_samples, index, mean_gap)
  clear = np.abs(grad) > 1e-3 * np.abs(grad).max(axis=1, keepdims=True)
  assert clear.mean() > 0.8
  x_adv = adversarial.fgsm(model, x, y, 0.05, SEED, num_samples,
                           example_index=index, loss="margin").numpy()
  np.testing.assert_allclose(x_adv[clear], (x + 0.05 * np.sign(grad))[clear],
                             atol=1e-6)
  probs = model.predict_proba(x, num_samples, SEED, example_index=index)
  np.testing.assert_allclose(
      probs, tf.reduce_mean(tf.nn.softmax(model.predict_logits(
          x, num_samples, SEED, example_index=index)), 0), atol=1e-7)


def _separable(n, rng):
  """Inputs uniform in [0, 1]^8, label 1 where the first half outweighs."""
  x = rng.uniform(size=(n, 8)).astype("float32")
  y = (x[:, :4].sum(1) > x[:, 4:].sum(1)).astype("int64")
  return x, y


def test_fgsm_lowers_the_accuracy_of_a_trained_vib_and_eps_0_is_clean():
  start = time.perf_counter()
  rng = np.random.default_rng(1)
  x_train, y_train = _separable(2000, rng)
  test = data_lib.Split(*_separable(500, rng))
  model = _vib(num_classes=2, num_flows=0)
  model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
  model.fit(x_train, y_train, epochs=5, batch_size=100, verbose=0)

  num_samples, batch_size = 4, 200
  accuracy = adversarial.robust_accuracy(
      model, test, (0.0, 0.05, 0.1), num_samples, SEED, batch_size=batch_size)
  assert list(accuracy) == [0.0, 0.05, 0.1]
  # Epsilon 0 is the clean accuracy of predict_proba with the same samples.
  correct = 0
  for lo in range(0, 500, batch_size):
    probs = model.predict_proba(test.x[lo:lo + batch_size], num_samples, SEED,
                                example_index=tf.range(lo, min(lo + batch_size,
                                                                500)))
    correct += int(np.sum(np.argmax(probs, -1) == test.y[lo:lo + batch_size]))
  assert accuracy[0.0] == correct / 500
  assert accuracy[0.0] > 0.9
  # A budget of 0.1 per pixel shifts the class margin (a sum difference of
  # spread 0.8) by up to 0.8: most examples flip.
  assert accuracy[0.05] < accuracy[0.0] - 0.15
  assert accuracy[0.1] < accuracy[0.05] - 0.1
  # Random signs of the same budget barely hurt: the attack's direction
  # matters, not its size.
  noisy = np.clip(test.x + 0.1 * rng.choice([-1.0, 1.0], size=test.x.shape),
                  0.0, 1.0).astype("float32")
  random_signs = adversarial.robust_accuracy(
      model, data_lib.Split(noisy, test.y), (0.0,), num_samples, SEED)
  assert random_signs[0.0] > accuracy[0.1] + 0.3
  assert time.perf_counter() - start < 60


def test_robust_accuracy_needs_labels():
  with pytest.raises(ValueError, match="labels"):
    adversarial.robust_accuracy(_vib(), data_lib.Split(np.zeros((2, 8))),
                                (0.1,), 2, SEED)


def test_random_restarts_find_what_a_start_at_x_cannot():
  # helpers.SaturatedClassifier at x_0 = 0.7 and 0.8 (y = 1): the
  # cross-entropy has no gradient at x, so PGD from x stays there. Random
  # starts in [x_0 - 0.25, x_0 + 0.25] below about 0.59 have a gradient (the
  # logit gap is under 90) and walk down across 0.5; only the first example
  # can get there.
  x = np.array([[0.7, 0.3], [0.8, 0.3]], np.float32)
  split = data_lib.Split(x, np.array([1, 1], np.int32))
  model = helpers.SaturatedClassifier()
  once = adversarial.robust_accuracy(model, split, (0.25,), 1, SEED,
                                     pgd_steps=20)
  # 30 restarts: each lands below 0.59 with probability ~0.28.
  restarted = adversarial.robust_accuracy(model, split, (0.25,), 1, SEED,
                                          pgd_steps=20, restarts=30)
  assert once == {0.25: 1.0} and restarted == {0.25: 0.5}
  for bad in (dict(restarts=0, pgd_steps=20), dict(restarts=2, pgd_steps=0)):
    with pytest.raises(ValueError, match="restarts"):
      adversarial.robust_accuracy(model, split, (0.25,), 1, SEED, **bad)


def test_pgd_random_starts_are_uniform_in_the_budget_and_per_example():
  model = _vib()
  rng = np.random.default_rng(5)
  x = rng.uniform(size=(6, 8)).astype("float32")
  x[:, 0] = 0.02  # The data range cuts the budget: starts are clipped.
  index = tf.range(6)
  start = adversarial.random_start(x, SEED, index).numpy()
  # Example n's start depends only on (seed, n): the same in another batch
  # (to float32 rounding: erf's vectorized path depends on the batch size).
  np.testing.assert_allclose(
      adversarial.random_start(x[3:], SEED, index[3:]).numpy(), start[3:],
      rtol=0, atol=1e-6)
  assert not np.array_equal(
      start, adversarial.random_start(x, SEED + 1, index).numpy())
  # Uniform on [0, 1): 20 000 values, mean and deciles within 5 sigma.
  many = adversarial.random_start(np.zeros((2500, 8), np.float32), SEED,
                                  tf.range(2500)).numpy().ravel()
  assert many.min() >= 0.0 and many.max() < 1.0
  assert abs(many.mean() - 0.5) < 5 * np.sqrt(1 / 12 / many.size)
  deciles = np.quantile(many, np.linspace(0.1, 0.9, 9))
  np.testing.assert_allclose(deciles, np.linspace(0.1, 0.9, 9),
                             atol=5 * np.sqrt(0.25 / many.size) / 0.5)
  # PGD from a random start (no steps' worth of size) stays in the budget.
  y = rng.integers(0, 3, size=6).astype("int32")
  x_adv = adversarial.pgd(model, x, y, 0.1, SEED, 2, steps=1, step_size=0.0,
                          example_index=index, start_seed=SEED).numpy()
  assert np.all(np.abs(x_adv - x) <= 0.1 + 1e-6) and x_adv.min() >= 0.0
  # With a step size of 0 x_adv is the start: x + 0.1 (2 u - 1), clipped.
  np.testing.assert_allclose(
      x_adv, np.clip(x + 0.1 * (2 * start - 1), 0, 1), atol=1e-6)
