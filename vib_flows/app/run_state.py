"""The run's State: building its strategy, data, model and optimizer.

`build_state` assembles everything a run builds once and restores the newest
readable checkpoint (`checkpoint_io`); `restore_run` does so for a finished
run from its own config.json; `load_evaluated_weights` puts the weights the
run evaluates and exports into the model.
"""

import dataclasses
import json
import os

from absl import logging
import keras
import ml_collections
import numpy as np
import tensorflow as tf

from vib_flows import data as data_lib
from vib_flows.app import checkpoint_io
from vib_flows.app import distribute
from vib_flows.app import limits
from vib_flows.app import model_builder
from vib_flows.app import optimizer_builder


@dataclasses.dataclass
class State:
  """Everything a run builds once: strategy, data, model and checkpoints.

  `best_weights` mirror `model.weights` and hold the weights of the best
  validation loss so far (`best_val_loss`); they are saved in every checkpoint.
  `restored` is the path of the checkpoint restored at start ("" if none).
  """

  config: object
  workdir: str
  strategy: tf.distribute.Strategy
  splits: object
  model: keras.Model
  optimizer: keras.optimizers.Optimizer
  checkpoint: tf.train.Checkpoint
  manager: tf.train.CheckpointManager
  best_weights: list
  best_val_loss: tf.Variable
  bad_epochs: tf.Variable
  is_chief: bool
  best_weights_step: tf.Variable
  restored: str = ""

  @property
  def step(self):
    return int(self.optimizer.iterations.numpy())

  def keep_best(self):
    """Copies the model's weights into `best_weights`."""
    for best, weight in zip(self.best_weights, self.model.weights):
      best.assign(weight)
    self.best_weights_step.assign(self.optimizer.iterations)

  @property
  def best_step(self):
    """The step of `best_weights` (the current step if there are none)."""
    return int(self.best_weights_step.numpy()) if self.has_best else self.step

  @property
  def evaluated_step(self):
    """The step of the weights `load_evaluated_weights` loads."""
    if bool(self.config.train.get("keep_best", True)):
      return self.best_step
    return self.step

  @property
  def has_best(self):
    return bool(np.isfinite(self.best_val_loss.numpy()))


def _set_precision(config):
  policy = "mixed_float16" if config.runtime.mixed_precision else "float32"
  keras.mixed_precision.set_global_policy(policy)


def _example_batch(split, n):
  batch = {"x": tf.constant(split.x[:n])}
  if split.y is not None:
    batch["y"] = tf.constant(split.y[:n], tf.int32)
  return batch


def build_state(config, workdir, strategy=None, splits=None):
  """Builds strategy, data, model, optimizer; restores the latest checkpoint.

  Every worker restores from the chief's DIR/checkpoints (the workdir is on a
  file system all workers share), so all of them resume from the same state.

  Raises:
    faults.CheckpointsUnreadableError: DIR/checkpoints holds checkpoints,
      none of them readable.
    ValueError: the checkpoint holds weights of other shapes (another model).
  """
  strategy = strategy or distribute.make_strategy(config.runtime)
  distribute.check_batch_size(config.train.batch_size, strategy)
  is_chief = distribute.is_chief(strategy)
  splits = splits or data_lib.load(config)
  limits.check(config, splits)  # Before building: refuses what cannot fit.
  _set_precision(config)
  keras.utils.set_random_seed(config.seed)
  with strategy.scope():
    model = model_builder.build_model(config, splits.info)
    optimizer = optimizer_builder.make_optimizer(
        config.optimizer, config.runtime.mixed_precision,
        strategy.num_replicas_in_sync,
        steps_per_epoch=splits.train.num_examples // config.train.batch_size,
        ema_decay=float(config.train.get("ema_decay", 0.0)))
    example = _example_batch(splits.train, 2)
    model.per_example_loss(
        example, tf.constant(1.0), tf.constant([0, 0], tf.int32), training=False
    )
    optimizer.build(model.trainable_variables)
    best_val_loss = tf.Variable(np.inf, dtype=tf.float32, trainable=False)
    bad_epochs = tf.Variable(0, dtype=tf.int64, trainable=False)
    best_weights_step = tf.Variable(0, dtype=tf.int64, trainable=False)
    best_weights = [
        tf.Variable(w, trainable=False, name="best_" + w.name.split(":")[0]
                    .replace("/", "_"))
        for w in model.weights
    ]
    checkpoint = tf.train.Checkpoint(
        model=model, optimizer=optimizer, best_val_loss=best_val_loss,
        bad_epochs=bad_epochs, best_weights=best_weights,
        best_weights_step=best_weights_step,
    )
  manager = tf.train.CheckpointManager(
      checkpoint, checkpoint_io.save_dir(workdir, strategy, is_chief),
      max_to_keep=2,
  )
  state = State(
      config, workdir, strategy, splits, model, optimizer, checkpoint, manager,
      best_weights, best_val_loss, bad_epochs, is_chief, best_weights_step,
  )
  state.restored = checkpoint_io.restore_latest(state)
  if state.restored:
    logging.info("Restored %s", state.restored)
  return state


def restore_best(state):
  """Loads the best-validation weights into the model, if there are any."""
  if state.has_best:
    for weight, best in zip(state.model.weights, state.best_weights):
      weight.assign(best)


def load_evaluated_weights(state):
  """Loads the weights that the run evaluates and exports into the model.

  `train.keep_best` (the default): the weights of the best validation loss
  (taken with the moving averages swapped in, when `train.ema_decay` is on).
  Otherwise the last weights, or their moving averages when they are kept.
  """
  if bool(state.config.train.get("keep_best", True)) and state.has_best:
    restore_best(state)
    return
  averages = optimizer_builder.moving_averages(state.optimizer)
  for variable, average in zip(state.model.trainable_variables, averages):
    variable.assign(average)


def restore_run(directory):
  """The `State` of a finished run with its evaluated weights loaded.

  Builds the model from the run's own config.json (the config it was trained
  with) on the default strategy.
  """
  keras.backend.clear_session()
  with open(os.path.join(directory, "config.json")) as f:
    saved = json.load(f)
  config = ml_collections.ConfigDict(saved)
  state = build_state(config, directory)
  load_evaluated_weights(state)
  return state

