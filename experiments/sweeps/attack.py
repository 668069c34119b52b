"""The VIB sweeps' robustness columns: accuracy under FGSM and PGD attacks.

With `eval.fgsm_epsilons` or `eval.pgd_epsilons` set for a sweep
(`--set=eval.pgd_epsilons=...`), every finished classifier run gets the
accuracy of each budget it lacks (`vib_flows.app.robustness`: the keys
test_fgsm_accuracy_eps<epsilon>, test_pgd_accuracy_eps<epsilon>; PGD
accuracies of another `eval.pgd_steps` or `eval.pgd_restarts` are taken
again): the VIB runs from
their evaluated weights (`run_state.restore_run`), the deterministic baseline
from its saved Keras model, both attacked by `vib_flows.adversarial`
(Goodfellow et al. 2015; Madry et al. 2018; Alemi et al. 2017, Sec. 4.2) with
the seed of the clean test accuracy, so epsilon 0 reproduces it.
"""

import os
from typing import Any

import keras
import ml_collections
import tensorflow as tf

from experiments.sweeps import aggregate
from experiments.sweeps import baseline
from vib_flows import data as data_lib
from vib_flows.app import evaluate
from vib_flows.app import model_builder
from vib_flows.app import robustness
from vib_flows.app import run_state
from vib_flows.app import workdir as workdir_lib

Metrics = dict[str, Any]


class LogitsClassifier:
  """A Keras model of logits seen as a classifier for `adversarial`.

  The deterministic network has no posterior samples: `num_samples`, `seed`
  and `example_index` are ignored, p(y|x) = softmax(logits(x)).
  """

  def __init__(self, model: keras.Model):
    self.model = model

  def predict_proba(self, x: tf.Tensor, num_samples: Any, seed: Any,
                    example_index: Any = None) -> tf.Tensor:
    return tf.nn.softmax(
        self.predict_logits(x, num_samples, seed, example_index)[0], axis=-1)

  def predict_logits(self, x: tf.Tensor, num_samples: Any, seed: Any,
                     example_index: Any = None) -> tf.Tensor:
    """The logits as one posterior sample, [1, B, C]."""
    del num_samples, seed, example_index
    return tf.cast(self.model(x), tf.float32)[tf.newaxis]


def backfill(directory: str, config: ml_collections.ConfigDict,
             deterministic: bool) -> tuple[Metrics, list[str]]:
  """Adds the missing accuracies under attack of a finished run to metrics.json.

  Args:
    directory: the run directory (metrics.json, config.json, checkpoints or
      the baseline's model file).
    config: the sweep's config of the run (its `eval.fgsm_epsilons`,
      `eval.pgd_epsilons`, `eval.pgd_steps`, `eval.pgd_restarts`,
      `eval.vib_num_samples` and
      `eval.batch_size` are used).
    deterministic: the run is the deterministic baseline.

  Returns:
    (the metrics, the attacks added: "FGSM", "PGD").
  """
  path = os.path.join(directory, "metrics.json")
  metrics = aggregate.read_json(path)
  budgets = robustness.missing(metrics, config)
  # A classifier's: a model that needs labels (the VIB).
  classifies = model_builder.model_class(config.model.kind).needs_labels
  if not any(budgets.values()) or not classifies:
    return metrics, []
  seed = tf.constant(evaluate.TEST_SEED, tf.int32)
  if deterministic:
    keras.backend.clear_session()
    model = keras.saving.load_model(
        os.path.join(directory, baseline.MODEL_FILE))
    classifier, split, num_samples = (
        LogitsClassifier(model), data_lib.load(config).test, 1)
  else:
    state = run_state.restore_run(directory)
    classifier, split, num_samples = (
        state.model, state.splits.test, int(config.eval.vib_num_samples))
  metrics = robustness.drop_stale(metrics, config)
  metrics.update(robustness.attack_metrics(classifier, split, config,
                                           num_samples, seed, budgets))
  workdir_lib.write_json_atomic(path, metrics)
  return metrics, [attack.upper() for attack, wanted in budgets.items()
                   if wanted]
