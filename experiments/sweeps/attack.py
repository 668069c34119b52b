"""The VIB sweeps' robustness columns: accuracy under the FGSM attack.

With `eval.fgsm_epsilons` set for a sweep (`--set=eval.fgsm_epsilons=...`),
every finished classifier run gets `test_fgsm_accuracy_eps<epsilon>` for each
epsilon it lacks: the VIB runs from their evaluated weights
(`run_state.restore_run`), the deterministic baseline from its saved Keras
model, both attacked by `vib_flows.adversarial` (Goodfellow et al. 2015; Alemi
et al. 2017, Sec. 4.2) with the seed of the clean test accuracy, so epsilon 0
reproduces it.
"""

import os
from typing import Any

import keras
import ml_collections
import tensorflow as tf

from experiments.sweeps import aggregate
from experiments.sweeps import baseline
from vib_flows import adversarial
from vib_flows import data as data_lib
from vib_flows.app import evaluate
from vib_flows.app import model_builder
from vib_flows.app import run_state
from vib_flows.app import workdir as workdir_lib

Metrics = dict[str, Any]
KEY = "test_fgsm_accuracy_eps{:g}"


class LogitsClassifier:
  """A Keras model of logits seen as `predict_proba` for `adversarial`.

  The deterministic network has no posterior samples: `num_samples`, `seed`
  and `example_index` are ignored, p(y|x) = softmax(logits(x)).
  """

  def __init__(self, model: keras.Model):
    self.model = model

  def predict_proba(self, x: tf.Tensor, num_samples: Any, seed: Any,
                    example_index: Any = None) -> tf.Tensor:
    del num_samples, seed, example_index
    return tf.nn.softmax(tf.cast(self.model(x), tf.float32), axis=-1)


def missing_epsilons(metrics: Metrics,
                     config: ml_collections.ConfigDict) -> list[float]:
  """The epsilons of `eval.fgsm_epsilons` whose accuracy `metrics` lacks."""
  epsilons = tuple(config.eval.get("fgsm_epsilons", ()) or ())
  return [float(e) for e in epsilons if KEY.format(e) not in metrics]


def backfill(directory: str, config: ml_collections.ConfigDict,
             deterministic: bool) -> tuple[Metrics, list[float]]:
  """Adds the missing FGSM accuracies of a finished run to its metrics.json.

  Args:
    directory: the run directory (metrics.json, config.json, checkpoints or
      the baseline's model file).
    config: the sweep's config of the run (its `eval.fgsm_epsilons`,
      `eval.vib_num_samples` and `eval.batch_size` are used).
    deterministic: the run is the deterministic baseline.

  Returns:
    (the metrics, the epsilons added).
  """
  path = os.path.join(directory, "metrics.json")
  metrics = aggregate.read_json(path)
  epsilons = missing_epsilons(metrics, config)
  # A classifier's: a model that needs labels (the VIB).
  classifies = model_builder.model_class(config.model.kind).needs_labels
  if not epsilons or not classifies:
    return metrics, []
  seed = tf.constant(evaluate.TEST_SEED, tf.int32)
  if deterministic:
    keras.backend.clear_session()
    model = keras.saving.load_model(
        os.path.join(directory, baseline.MODEL_FILE))
    split = data_lib.load(config).test
    robust = adversarial.robust_accuracy(
        LogitsClassifier(model), split, epsilons, 1, seed,
        int(config.eval.batch_size))
  else:
    state = run_state.restore_run(directory)
    robust = adversarial.robust_accuracy(
        state.model, state.splits.test, epsilons,
        int(config.eval.vib_num_samples), seed, int(config.eval.batch_size))
  metrics.update({KEY.format(e): accuracy for e, accuracy in robust.items()})
  workdir_lib.write_json_atomic(path, metrics)
  return metrics, epsilons
