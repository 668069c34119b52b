"""The evaluation (`vib_flows.app.evaluate`): test metrics, freed models.

An example's estimate does not depend on its batch mates or on the chunking
of its K samples (`vib_flows.indexed_noise`), so the test metrics are the
same for any eval.batch_size and eval.importance_chunk_size; the VIB's
I(Z;Y) lower bound is H(Y) - CE on the test labels; an evaluated model is
freed.
"""

import math
import types

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from vib_flows.app import evaluate
from vib_flows.app import model_builder

# Float32 sums over different batch and chunk shapes agree to rounding only.
RTOL = 1e-5
# Two amortized planar flows on `helpers.small_config`'s networks.
FLOWS = {"flow.num_flows": 2, "flow.amortized": True}


def _splits(kind, n=23):
  test, train = helpers.digits_batch(n), helpers.digits_batch(40, seed=1)
  labels = kind == "vib"
  return types.SimpleNamespace(
      test=types.SimpleNamespace(x=test["x"], y=test["y"] if labels else None),
      train=types.SimpleNamespace(x=train["x"],
                                  y=train["y"] if labels else None),
      info=types.SimpleNamespace(num_classes=10))


def _test_metrics(model, splits, config, batch_size, chunk_size):
  config.eval.batch_size = batch_size
  config.eval.importance_chunk_size = chunk_size
  return evaluate.test_metrics(model, splits, config)


@pytest.mark.slow  # Traces the evaluation twice: 20-30 s on 2 busy cores.
def test_vae_test_metrics_ignore_eval_batch_and_chunk_size():
  config = helpers.small_config(**FLOWS, eval__num_importance_samples=24,
                                loss__num_samples=2)
  model = model_builder.build_model(config, helpers.data_info())
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
  config = helpers.small_config("vib", **FLOWS, eval__vib_num_samples=3,
                                loss__num_samples=2)
  model = model_builder.build_model(config, helpers.data_info())
  splits = _splits("vib")
  reference = _test_metrics(model, splits, config, 23, 1)
  for batch_size in (4,):
    metrics = _test_metrics(model, splits, config, batch_size, 1)
    for key in ("test_cross_entropy", "test_kl", "test_loss"):
      np.testing.assert_allclose(metrics[key], reference[key], rtol=RTOL,
                                 err_msg=f"{key}, batch {batch_size}")
    assert metrics["test_accuracy"] == reference["test_accuracy"]


def test_evaluated_models_are_freed():
  """Evaluate's per-model tf.function cache must not keep models alive.

  A sweep evaluates dozens of models in one process.
  """
  import gc  # pylint: disable=g-import-not-at-top
  import weakref  # pylint: disable=g-import-not-at-top

  config = helpers.small_config()
  model = model_builder.build_model(config, helpers.data_info())
  split = types.SimpleNamespace(x=helpers.digits_batch(4)["x"], y=None)
  terms = evaluate.mean_terms(model, split, config)
  assert np.isfinite(terms["loss"])
  ref = weakref.ref(model)
  del model
  gc.collect()
  assert ref() is None


def _vib_ignoring_z(log_probs, train_y, test_y):
  """A VIB whose classifier ignores z: p(y|z) = softmax(log_probs) for any z.

  Returns (model, config, splits) for `evaluate.test_metrics`.
  """
  num_classes = len(log_probs)
  config = helpers.small_config("vib", model__decoder_hidden=())
  info = helpers.data_info(num_classes=num_classes, preprocess="levels")
  model = model_builder.build_model(config, info)
  model.classifier.head.kernel.assign(tf.zeros_like(model.classifier.head.kernel))
  model.classifier.head.bias.assign(log_probs)

  def split(y, seed):
    x = helpers.digits_batch(len(y), seed=seed)["x"]
    return types.SimpleNamespace(x=x, y=np.asarray(y, np.int64))

  splits = types.SimpleNamespace(train=split(train_y, 1), test=split(test_y, 2),
                                 info=info)
  return model, config, splits


def _entropy_nats(y, num_classes):
  p = np.bincount(y, minlength=num_classes) / len(y)
  p = p[p > 0]
  return float(-(p * np.log(p)).sum())


def test_izy_lower_bound_of_a_classifier_that_ignores_z():
  """I(Z;Y) >= H(Y) - CE (Alemi et al. 2017) on the test split.

  A classifier that ignores z and predicts the label marginal p has
  CE = H(Y) exactly, so the bound is 0 (= I(Z;Y) of such a model); a uniform
  one has CE = log C and the bound H(Y) - log C < 0. Catches H(Y) in bits,
  the sign of the bound, and a CE not averaged as the metric says.
  """
  labels = np.repeat([0, 1, 2, 3], [8, 4, 2, 2])  # H = 1.21 nats, log 4 = 1.39.
  h_y = _entropy_nats(labels, 4)
  marginal = np.log(np.bincount(labels) / len(labels)).astype(np.float32)
  for log_probs, want_ce in ((marginal, h_y), (np.zeros(4, np.float32),
                                               math.log(4))):
    model, config, splits = _vib_ignoring_z(log_probs, labels,
                                            np.roll(labels, 5))
    metrics = evaluate.test_metrics(model, splits, config)
    np.testing.assert_allclose(metrics["label_entropy"], h_y, rtol=1e-6)
    np.testing.assert_allclose(metrics["test_cross_entropy"], want_ce,
                               rtol=1e-5)
    np.testing.assert_allclose(metrics["test_izy_lower"], h_y - want_ce,
                               atol=1e-5)


def test_izy_lower_uses_the_test_labels():
  """Training labels balanced, test labels all one class: no positive bound.

  On the test split Y is constant, so I(Z;Y) = 0 and no lower bound of it
  can be positive.
  """
  log_probs = np.array([0.0, -30.0, -30.0, -30.0], np.float32)
  model, config, splits = _vib_ignoring_z(
      log_probs, train_y=np.arange(16) % 4, test_y=np.zeros(16, np.int64))
  metrics = evaluate.test_metrics(model, splits, config)
  assert metrics["test_cross_entropy"] < 1e-6
  np.testing.assert_allclose(metrics["test_izy_lower"], 0.0, atol=1e-5)
