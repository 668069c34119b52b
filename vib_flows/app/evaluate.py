"""Test metrics (nats per example), validation loss, and DIR/metrics.json.

Every model: test_loss and test_kl, the split means of its `per_example_loss`
terms at the model's `beta`, and num_test_examples; then the model's own
(`test_estimates`, averaged over the split, and `test_metrics`):
VAE (Burda et al. 2016 for the importance-weighted bound):
  test_elbo            mean_k log w_k,   log w_k = log p(x|zK) + log p(zK)
                         - log q0(z0|x) + sum log|det J|
  test_log_likelihood  log (1/K) sum_k w_k  (IWAE estimate of log p(x), >= ELBO
                       in expectation; K = eval.num_importance_samples)
  test_reconstruction  E_q log p(x|zK);  test_kl  E_q[log qK(zK|x) - log p(zK)]
VIB (Alemi et al. 2017):
  test_accuracy        argmax of p(y|x) averaged over eval.vib_num_samples z's
  test_cross_entropy   E_q[-log p(y|z)]
  test_kl              E_q[log qK(z|x) - log p(z)] >= I(Z;X)  (upper bound)
  test_izy_lower       H(Y) - test_cross_entropy <= I(Z;Y)     (lower bound)
  test_fgsm_accuracy_eps{eps:g}, test_pgd_accuracy_eps{eps:g},
  test_pgd_steps, test_pgd_restarts
                       accuracies under the attacks of eval.fgsm_epsilons and
                       eval.pgd_epsilons (`robustness`); eps 0 gives
                       test_accuracy

Noise: the posterior samples of the example at position n of the evaluated
split depend only on (a fixed seed, n, sample index) (`indexed_noise`), so each
example's contribution does not change with eval.batch_size or
eval.importance_chunk_size, and every evaluation of a model draws the same z's.
"""

import os
import weakref

from absl import logging
import tensorflow as tf

from vib_flows import data as data_lib
from vib_flows.app import plots
from vib_flows.app import robustness
from vib_flows.app import workdir as workdir_lib
from vib_flows.models import latent

# Fixed: every evaluation of a model draws the same z's.
_EVAL_SEED = 20_171_205
# Seeds of the loss terms and of the test-time estimates (IWAE, VIB accuracy).
_LOSS_SEED = (_EVAL_SEED, 0)
_TEST_SEED = (_EVAL_SEED, 1)
TEST_SEED = _TEST_SEED  # The seed of the test accuracy, for other evaluations.
_FUNCTIONS = weakref.WeakKeyDictionary()


def batches(split, batch_size):
  """Yields {"x", "y", "index"} dicts of consecutive examples.

  "index" [B] int32 holds the examples' positions in the split (the last
  batch may be short).
  """
  for start in range(0, split.x.shape[0], batch_size):
    batch = {"x": tf.constant(split.x[start:start + batch_size])}
    batch["index"] = tf.range(start, start + int(batch["x"].shape[0]))
    if split.y is not None:
      batch["y"] = tf.constant(split.y[start:start + batch_size], tf.int32)
    yield batch


def _seed(pair):
  return tf.constant(pair, tf.int32)


def sample_counts(config):
  """The `SampleCounts` of the test-time estimates (config.eval)."""
  return latent.SampleCounts(
      importance_samples=int(config.eval.num_importance_samples),
      chunk_size=int(config.eval.importance_chunk_size),
      predictive_samples=int(config.eval.vib_num_samples))


def _functions(model, config):
  """tf.functions of one model, made once per (beta, sample counts).

  The loss terms are taken at the model's `beta`, read here: a model whose
  beta changes gets new functions. The functions reach the model through a
  weak reference: a strong one in a value of the WeakKeyDictionary
  `_FUNCTIONS` would keep every evaluated model (and its traced graphs)
  alive for the life of the process.
  """
  per_model = _FUNCTIONS.setdefault(model, {})
  beta = float(model.beta)
  counts = sample_counts(config)
  settings = (beta, counts)
  if settings not in per_model:
    model_ref = weakref.ref(model)

    # Summed over the batch in the graph: one call and one read per batch
    # (the trainer validates every epoch).
    @tf.function(reduce_retracing=True, autograph=False)
    def loss_sums(batch, seed):
      _, terms = model_ref().per_example_loss(
          batch, beta, seed, training=False, example_index=batch["index"])
      return {k: tf.reduce_sum(v) for k, v in terms.items()}

    # The model's test-time estimates, per example.
    @tf.function(reduce_retracing=True, autograph=False)
    def test_estimates(batch, seed):
      return model_ref().test_estimates(batch, seed, counts)

    per_model[settings] = {"loss_sums": loss_sums,
                           "test_estimates": test_estimates}
  return per_model[settings]


def mean_terms(model, split, config):
  """Per-example means of `per_example_loss` terms over a split.

  With the model's beta (`model.beta`).
  """
  fns = _functions(model, config)
  totals, count = {}, 0
  for batch in batches(split, config.eval.batch_size):
    sums = fns["loss_sums"](batch, _seed(_LOSS_SEED))
    for k, v in sums.items():
      totals[k] = totals.get(k, 0.0) + float(v)
    count += int(batch["x"].shape[0])
  return {k: v / count for k, v in totals.items()}


def validation_metrics(model, splits, config):
  """Mean loss terms on the validation split (the early-stopping criterion)."""
  return mean_terms(model, splits.validation, config)


def test_metrics(model, splits, config):
  """Returns the contract's test metrics (see the module docstring)."""
  fns = _functions(model, config)
  terms = mean_terms(model, splits.test, config)
  n = splits.test.x.shape[0]
  metrics = {"test_kl": terms["kl"], "test_loss": terms["loss"],
             "num_test_examples": n}
  totals = {}
  for batch in batches(splits.test, config.eval.batch_size):
    estimates = fns["test_estimates"](batch, _seed(_TEST_SEED))
    for k, v in estimates.items():
      totals[k] = totals.get(k, 0.0) + float(tf.reduce_sum(v))
  means = {k: v / n for k, v in totals.items()}
  metrics.update(model.test_metrics(terms, means, splits.test.y,
                                    sample_counts(config)))
  # Data from a known model (synthetic:*) also give the exact log p(x).
  metrics.update(data_lib.exact_test_metrics(splits, metrics))
  if config.model.kind == "vib":  # A classifier (`config_checks`).
    # The posterior samples of test_accuracy: eps 0 reproduces it.
    metrics.update(robustness.attack_metrics(
        model, splits.test, config, int(config.eval.vib_num_samples),
        _seed(_TEST_SEED)))
  return metrics


def evaluate_and_write(state, run_info):
  """Evaluates on the test split; the chief writes metrics.json and pictures.

  Args:
    state: `run_state.State` whose model holds the weights to evaluate.
    run_info: extra entries for metrics.json ("step": last training step,
      "steps_this_run"); "best_step" is the step of the evaluated weights.
  """
  metrics = test_metrics(state.model, state.splits, state.config)
  metrics["best_step"] = state.evaluated_step
  metrics.setdefault("step", state.step)
  metrics.update(run_info)
  if state.is_chief:
    workdir_lib.write_json_atomic(
        os.path.join(state.workdir, "metrics.json"), metrics
    )
    plots.save_run_pictures(state.model, state.splits, state.config,
                            state.workdir)
  logging.info("Test metrics: %s", metrics)
  return metrics
