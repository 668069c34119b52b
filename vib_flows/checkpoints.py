"""The run's State: building it, restoring and writing its checkpoints.

A checkpoint (`tf.train.CheckpointManager` in DIR/checkpoints, the two newest
kept) holds the model, the optimizer (its step counter and moments), the best
validation loss, the epochs without gain and the weights of the best
validation loss so far with their step.

Writes: the chief writes checkpoints; TensorFlow writes the files of
`ckpt-N` into `ckpt-N_temp/`, merges them into `ckpt-N.index` and
`ckpt-N.data-*`, then rewrites the state file `checkpoint` (atomically, by a
rename) last, so a kill while writing leaves the previous checkpoint in
force. A write that fails (disk full, read-only) removes what it wrote of
`ckpt-N` and raises `faults.WriteFailedError`.

Restores (`restore_latest`): the newest readable checkpoint. When the newest
cannot be read (a truncated data file, a missing index, a garbage state
file), a warning names its files and the next newest is tried; when none
can be read, `faults.CheckpointsUnreadableError` names the directory and how
to start over. A run never starts over silently.
"""

import contextlib
import dataclasses
import json
import os
import re

from absl import logging
import keras
import ml_collections
import numpy as np
import tensorflow as tf

from vib_flows import data as data_lib
from vib_flows import distribute
from vib_flows import faults
from vib_flows import limits
from vib_flows import model_builder
from vib_flows import optimizers
from vib_flows import workdir as workdir_lib

_CHECKPOINT_NAME = re.compile(
    r"^ckpt-(\d+)(\.index|\.data-\d+-of-\d+|_temp.*)$")
_STATE_FILE = "checkpoint"
# Files of checkpoints but no state file: the first save was interrupted
# before its state file was written; nothing was ever committed.
_NO_STATE_FILE = "the state file {} is missing"
# What reading a damaged checkpoint raises: TensorFlow's errors, and the
# built-in ones its checkpoint reader translates them to (a truncated data
# file gives IndexError "Read less bytes than requested").
_READ_ERRORS = (tf.errors.OpError, AssertionError, IndexError, ValueError,
                OSError)


def make_optimizer(optimizer_config, mixed_precision=False, num_replicas=1,
                   steps_per_epoch=1, ema_decay=0.0):
  """Returns the Keras optimizer named by `optimizer.name`.

  The learning rate is `optimizer.learning_rate`, or with
  `optimizer.decay_every_epochs` = E > 0 the staircase schedule
  lr_t = learning_rate * decay_rate^floor(t / (E * steps_per_epoch)) at step
  t (Keras' `ExponentialDecay`; Alemi et al. 2017: 0.97 every 2 epochs).
  Adam and Adamax take `optimizer.beta_1`. With `ema_decay` = d > 0 the
  optimizer also keeps an exponential moving average of the trainable
  weights, a <- d a + (1 - d) w after every step (a = w after the first),
  in its own variables (Keras' `use_ema`), so checkpoints save it;
  `averaged_weights` swaps it in.

  Adam and Adamax are Keras' with the per-variable update as one fused
  TensorFlow kernel (`vib_flows.optimizers`: same maths, a quarter faster
  steps without XLA on the digits VAE).

  `optimizer.clipnorm` = c > 0 clips the global-batch gradient g by its
  global norm, g * min(1, c / ||g||) over all variables together (Keras'
  `global_clipnorm`; Keras' `clipnorm` would clip each variable's gradient
  on its own). Keras clips before its all-reduce, i.e. each replica's share;
  so with N replicas the train step hands every replica g / N, the already
  all-reduced gradient, and the optimizer clips at c / N:
  N * clip(g / N, c / N) = clip(g, c) (`train_loop.make_train_step`).
  """
  learning_rate = optimizer_config.learning_rate
  every = int(optimizer_config.get("decay_every_epochs", 0))
  if every:
    learning_rate = keras.optimizers.schedules.ExponentialDecay(
        learning_rate, decay_steps=every * max(int(steps_per_epoch), 1),
        decay_rate=float(optimizer_config.decay_rate), staircase=True)
  kwargs = {"learning_rate": learning_rate}
  if optimizer_config.name in ("adam", "adamax"):
    kwargs["beta_1"] = float(optimizer_config.get("beta_1", 0.9))
  if ema_decay:
    kwargs.update(use_ema=True, ema_momentum=float(ema_decay))
  if optimizer_config.clipnorm:
    kwargs["global_clipnorm"] = optimizer_config.clipnorm / num_replicas
  optimizer = optimizers.get(optimizer_config.name, **kwargs)
  if mixed_precision:
    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
  return optimizer


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


def moving_averages(optimizer):
  """The optimizer's moving averages of the trainable weights, or [] if none.

  In the order of the variables the optimizer was built with (the model's
  `trainable_variables`).
  """
  inner = getattr(optimizer, "inner_optimizer", optimizer)  # Loss scaling.
  if not getattr(inner, "use_ema", False):
    return []
  return list(inner._model_variables_moving_average)  # pylint: disable=protected-access


@contextlib.contextmanager
def averaged_weights(model, optimizer):
  """Within the block the model holds the moving averages of its weights.

  Swaps the trainable weights with the optimizer's moving averages
  (`make_optimizer`'s `ema_decay`) and back on exit; without averages it
  changes nothing. Validation and the kept best weights are taken inside it.
  """
  averages = moving_averages(optimizer)
  if not averages:
    yield
    return
  variables = model.trainable_variables
  saved = [tf.identity(v) for v in variables]
  for variable, average in zip(variables, averages):
    variable.assign(average)
  try:
    yield
  finally:
    for variable, value in zip(variables, saved):
      variable.assign(value)


def checkpoint_dir(workdir):
  """DIR/checkpoints, the chief's checkpoints that every worker restores."""
  return os.path.join(workdir, "checkpoints")


def _save_dir(workdir, strategy, is_chief):
  """Chief writes to DIR/checkpoints; other workers to a scratch dir.

  Every worker must take part in a save under MultiWorkerMirroredStrategy;
  the scratch copies of non-chief workers are deleted after each save.
  """
  if is_chief:
    return checkpoint_dir(workdir)
  return os.path.join(workdir, "worker_scratch",
                      f"checkpoints_{distribute.worker_id(strategy)}")


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
    optimizer = make_optimizer(
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
      checkpoint, _save_dir(workdir, strategy, is_chief), max_to_keep=2,
  )
  state = State(
      config, workdir, strategy, splits, model, optimizer, checkpoint, manager,
      best_weights, best_val_loss, bad_epochs, is_chief, best_weights_step,
  )
  state.restored = restore_latest(state)
  if state.restored:
    logging.info("Restored %s", state.restored)
  return state


def _number(path):
  return int(path.rsplit("-", 1)[1])


def _files_of(directory, number):
  """The names of the files and directories of ckpt-`number` in `directory`."""
  return sorted(
      name for name in tf.io.gfile.listdir(directory)
      if (m := _CHECKPOINT_NAME.match(name.rstrip("/"))) and
      int(m[1]) == number)


def _candidates(directory):
  """Checkpoint paths to try, newest first, and a problem of the state file.

  With a readable state file: the checkpoints it lists, then older ones
  found on disk (a checkpoint newer than the state file's is an interrupted
  write). Without one: every checkpoint number found on disk.

  Returns:
    (list of paths, "" or the reason the state file is not used).
  """
  if not tf.io.gfile.isdir(directory):
    return [], ""
  on_disk = set()
  for name in tf.io.gfile.listdir(directory):
    match = _CHECKPOINT_NAME.match(name.rstrip("/"))
    if match and not match[2].startswith("_temp"):
      on_disk.add(int(match[1]))
  state_path = os.path.join(directory, _STATE_FILE)
  ckpt_state = None
  problem = ""
  if tf.io.gfile.exists(state_path):
    ckpt_state = tf.train.get_checkpoint_state(directory)  # None: unparsable.
    if ckpt_state is None or not ckpt_state.model_checkpoint_path:
      problem = f"the state file {state_path} cannot be parsed"
      ckpt_state = None
  elif on_disk:
    problem = _NO_STATE_FILE.format(state_path)
  if ckpt_state is None:
    return [os.path.join(directory, f"ckpt-{n}")
            for n in sorted(on_disk, reverse=True)], problem
  listed = []
  # get_checkpoint_state has joined relative paths to `directory` already.
  for path in [*reversed(ckpt_state.all_model_checkpoint_paths),
               ckpt_state.model_checkpoint_path]:
    if path not in listed:
      listed.append(path)
  listed.sort(key=_number, reverse=True)
  newest = _number(listed[0])
  older = [os.path.join(directory, f"ckpt-{n}")
           for n in sorted(on_disk, reverse=True) if n < newest]
  return listed + [p for p in older if p not in listed], problem


def restore_latest(state):
  """Restores the newest readable checkpoint of DIR/checkpoints.

  Returns:
    Its path, or "" when the directory holds no checkpoint (or only the
    unreadable files of a first write interrupted before the state file).

  Raises:
    faults.CheckpointsUnreadableError: there are checkpoint files but none
      of them can be read.
    ValueError: a readable checkpoint holds weights of other shapes.
  """
  directory = checkpoint_dir(state.workdir)
  paths, problem = _candidates(directory)
  if problem:
    logging.warning("Checkpoints of %s: %s.", state.workdir, problem)
  broken = []
  for path in paths:
    error = _try_restore(state, path)
    if error is not None:
      files = _files_of(directory, _number(path)) or ["no files"]
      broken.append(f"{os.path.basename(path)} ({', '.join(files)}: "
                    f"{faults.reason(error)})")
      logging.warning(
          "Checkpoint %s cannot be read (%s in %s): %s. Trying an older one.",
          path, ", ".join(files), directory, faults.reason(error))
      continue
    if broken:
      logging.warning("Restored %s instead of the newer unreadable %s.",
                      path, "; ".join(broken))
    return path
  if problem == _NO_STATE_FILE.format(os.path.join(directory, _STATE_FILE)):
    logging.warning("No complete checkpoint in %s (the first write was "
                    "interrupted): training starts from step 0.", directory)
    return ""
  if broken or problem:
    raise faults.CheckpointsUnreadableError(
        f"No readable checkpoint in {directory} "
        f"({'; '.join(broken + ([problem] if problem else []))}). Nothing was "
        "restored or overwritten. To start the run over, move the "
        f"checkpoints away (mv {directory} {directory}.broken) and run the "
        "same command again.")
  return ""


def _try_restore(state, path):
  """Restores `path`; returns None, or the error if it cannot be read.

  Raises:
    ValueError: the checkpoint is readable but holds weights of other shapes
      (another model: no older checkpoint would do).
  """
  try:
    shapes = dict(tf.train.list_variables(path))
  except _READ_ERRORS as error:
    return error
  _check_weight_shapes(state, path, shapes)
  try:
    state.checkpoint.restore(path).assert_existing_objects_matched()
  except _READ_ERRORS as error:
    return error
  return None


def _check_weight_shapes(state, path, shapes):
  """Refuses a checkpoint whose model weights have other shapes than ours.

  The best-weights copy in every checkpoint lists the model's weights in
  order; a run made with another model (or a vib_flows whose layers held
  their weights differently, for example one planar layer per map before a
  planar stack became one layer of K maps) would otherwise fail deep in the
  restore with a bare shape error.

  Raises:
    faults.ConfigError: (a ValueError) DIR/config.json names another model
      kind (VAE/VIB) than this config: said without the shape lists; else
      the shapes differ (names the run and both shape lists).
  """
  saved = []
  for i in range(len(shapes)):
    shape = shapes.get(f"best_weights/{i}/.ATTRIBUTES/VARIABLE_VALUE")
    if shape is None:
      break
    saved.append(tuple(shape))
  ours = [tuple(w.shape) for w in state.model.weights]
  if saved != ours:
    workdir_lib.check_model_kind(
        workdir_lib.read_config(state.workdir), state.config, state.workdir,
        "Use the run's own config (its config.json), or another --workdir.")
    raise faults.ConfigError(
        f"The checkpoint {path} holds model weights of shapes {saved}, this "
        f"config builds {ours}: the run was made by a vib_flows whose layers "
        "held their weights differently (planar stacks held one layer per "
        "map before they became one layer of K maps), or with another model. "
        "Train it again in a new --workdir.")


def save(state):
  """Writes the checkpoint of the current step (every worker takes part).

  Raises:
    faults.WriteFailedError: the write failed; the files of this checkpoint are
      removed, the previous checkpoint stays in force.
  """
  number = state.step
  directory = state.manager.directory
  try:
    with faults.writing(f"checkpoint ckpt-{number}", directory):
      state.manager.save(checkpoint_number=number)
  except faults.WriteFailedError:
    _remove_partial(directory, number)
    raise
  finally:
    if not state.is_chief:  # Scratch copies of non-chief workers: discarded.
      if tf.io.gfile.exists(directory):
        tf.io.gfile.rmtree(directory)


def _remove_partial(directory, number):
  """Removes the files of a failed write of ckpt-`number` (best effort)."""
  if tf.train.latest_checkpoint(directory) == os.path.join(
      directory, f"ckpt-{number}"):
    return  # Complete and in force (the failure came after the state file).
  try:
    names = _files_of(directory, number)
  except tf.errors.OpError:
    return
  for name in names:
    path = os.path.join(directory, name.rstrip("/"))
    try:
      if tf.io.gfile.isdir(path):
        tf.io.gfile.rmtree(path)
      else:
        tf.io.gfile.remove(path)
    except tf.errors.OpError as error:
      logging.warning("Could not remove %s: %s", path, error)


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
  for variable, average in zip(state.model.trainable_variables,
                               moving_averages(state.optimizer)):
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

