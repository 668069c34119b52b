"""train_and_evaluate(config, workdir): one custom distributed loop for every strategy.

The model is a single-replica view (its `per_example_loss`); only this module
knows the strategy (TF Model Garden / orbit style). Each replica computes its
per-example losses, scales them for the global batch
(`tf.nn.compute_average_loss`), and the Keras optimizer all-reduces the
gradients. Keras' `Model.fit` fails under MultiWorkerMirroredStrategy with TF
2.21 (docs/design.md), so `fit` is not used here.

Reproducibility: data order of epoch e is seeded by (seed, e), posterior noise
of step t on replica r by (seed, t, r), so a resumed run repeats the
uninterrupted one. Faults: checkpoints every epoch (and every
`train.checkpoint_every_steps`), written by the chief, with the checkpoint state
file updated last so a kill while writing leaves the previous checkpoint in
force; a non-finite loss stops the run before anything is saved.
"""

import dataclasses
import json
import os
import time

from absl import logging
import keras
import ml_collections
import numpy as np
import tensorflow as tf

from vib_flows import config_checks
from vib_flows import data as data_lib
from vib_flows import distribute
from vib_flows import evaluate
from vib_flows import models
from vib_flows import objectives
from vib_flows import summaries
from vib_flows import workdir as workdir_lib


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite."""


def make_optimizer(optimizer_config, mixed_precision=False, num_replicas=1):
  """Returns the Keras optimizer named by `optimizer.name`.

  `optimizer.clipnorm` = c > 0 clips the global-batch gradient g by its
  global norm, g * min(1, c / ||g||) over all variables together (Keras'
  `global_clipnorm`; Keras' `clipnorm` would clip each variable's gradient
  on its own). Keras clips before its all-reduce, i.e. each replica's share;
  so with N replicas the train step hands every replica g / N, the already
  all-reduced gradient, and the optimizer clips at c / N:
  N * clip(g / N, c / N) = clip(g, c) (`make_train_step`).
  """
  classes = {
      "adam": keras.optimizers.Adam,
      "adamax": keras.optimizers.Adamax,
      "sgd": keras.optimizers.SGD,
      "rmsprop": keras.optimizers.RMSprop,
  }
  kwargs = {"learning_rate": optimizer_config.learning_rate}
  if optimizer_config.clipnorm:
    kwargs["global_clipnorm"] = optimizer_config.clipnorm / num_replicas
  optimizer = classes[optimizer_config.name](**kwargs)
  if mixed_precision:
    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
  return optimizer


@dataclasses.dataclass
class State:
  """Everything a run builds once: strategy, data, model and checkpoints."""

  config: object
  workdir: str
  strategy: tf.distribute.Strategy
  splits: object
  model: keras.Model
  optimizer: keras.optimizers.Optimizer
  checkpoint: tf.train.Checkpoint
  manager: tf.train.CheckpointManager
  best_manager: tf.train.CheckpointManager
  best_val_loss: tf.Variable
  bad_epochs: tf.Variable
  is_chief: bool

  @property
  def step(self):
    return int(self.optimizer.iterations.numpy())


def _checkpoint_dir(workdir, name, strategy, is_chief):
  """Chief writes to DIR/name; other workers to a scratch dir (deleted later)."""
  if is_chief:
    return os.path.join(workdir, name)
  return os.path.join(
      workdir, "worker_scratch", f"{name}_{distribute.worker_id(strategy)}"
  )


def _set_precision(config):
  policy = "mixed_float16" if config.runtime.mixed_precision else "float32"
  keras.mixed_precision.set_global_policy(policy)


def build_state(config, workdir, strategy=None, splits=None):
  """Builds strategy, data, model, optimizer and restores the latest checkpoint."""
  config_checks.validate(config)
  strategy = strategy or distribute.make_strategy(config.runtime)
  distribute.check_batch_size(config.train.batch_size, strategy)
  is_chief = distribute.is_chief(strategy)
  splits = splits or data_lib.load(config)
  _set_precision(config)
  keras.utils.set_random_seed(config.seed)
  with strategy.scope():
    model = models.build_model(config, splits.info)
    optimizer = make_optimizer(config.optimizer, config.runtime.mixed_precision,
                               strategy.num_replicas_in_sync)
    example = _example_batch(splits.train, 2)
    model.per_example_loss(
        example, tf.constant(1.0), tf.constant([0, 0], tf.int32), training=False
    )
    optimizer.build(model.trainable_variables)
    best_val_loss = tf.Variable(np.inf, dtype=tf.float32, trainable=False)
    bad_epochs = tf.Variable(0, dtype=tf.int64, trainable=False)
    checkpoint = tf.train.Checkpoint(
        model=model, optimizer=optimizer, best_val_loss=best_val_loss,
        bad_epochs=bad_epochs,
    )
  manager = tf.train.CheckpointManager(
      checkpoint, _checkpoint_dir(workdir, "checkpoints", strategy, is_chief),
      max_to_keep=2,
  )
  best_manager = tf.train.CheckpointManager(
      checkpoint, _checkpoint_dir(workdir, "best", strategy, is_chief),
      max_to_keep=1,
  )
  if manager.latest_checkpoint:
    checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    logging.info("Restored %s", manager.latest_checkpoint)
  return State(
      config, workdir, strategy, splits, model, optimizer, checkpoint, manager,
      best_manager, best_val_loss, bad_epochs, is_chief,
  )


def _example_batch(split, n):
  batch = {"x": tf.constant(split.x[:n])}
  if split.y is not None:
    batch["y"] = tf.constant(split.y[:n], tf.int32)
  return batch


def use_xla(config, strategy):
  """Whether to XLA-compile the gradient computation (`train.jit_compile`).

  Not with several replicas on logical CPU devices of one process (the set-up
  that tests strategies without GPUs): XLA then reads a replica's variables
  from the wrong CPU device and fails. GPUs and one-device runs compile.
  """
  if not config.train.jit_compile:
    return False
  if strategy.num_replicas_in_sync == 1:
    return True
  devices = strategy.extended.worker_devices
  if len(devices) > 1 and all("CPU" in d.upper() for d in devices):
    logging.info("XLA off: %d replicas on logical CPU devices.", len(devices))
    return False
  return True


def _replica_share_of_sum(grads, num_replicas):
  """All-reduced gradients / num_replicas (None gradients stay None)."""
  present = [g for g in grads if g is not None]
  summed = iter(tf.distribute.get_replica_context().all_reduce(
      tf.distribute.ReduceOp.SUM, present))
  return [None if g is None else next(summed) / num_replicas for g in grads]


def make_train_step(state):
  """Returns a tf.function running one distributed step; gives summed terms.

  The returned function takes a distributed batch and returns a dict of the
  per-example terms summed over the global batch (plus "count").
  """
  config, model, optimizer, strategy = (
      state.config, state.model, state.optimizer, state.strategy
  )
  global_batch = config.train.batch_size
  base_seed = tf.constant([config.seed, 0], tf.int32)
  mixed = config.runtime.mixed_precision
  clip_global_batch = bool(config.optimizer.clipnorm) and (
      strategy.num_replicas_in_sync > 1)

  def gradients(batch, beta, seed):
    with tf.GradientTape() as tape:
      surrogate, terms = model.per_example_loss(
          batch, beta, seed, training=True
      )
      loss = tf.nn.compute_average_loss(
          surrogate, global_batch_size=global_batch
      )
      if model.losses:
        loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
      scaled = optimizer.scale_loss(loss) if mixed else loss
    grads = tape.gradient(scaled, model.trainable_variables)
    sums = {k: tf.reduce_sum(tf.cast(v, tf.float32)) for k, v in terms.items()}
    sums["count"] = tf.cast(tf.shape(surrogate)[0], tf.float32)
    return grads, sums

  # With one replica XLA compiles the whole step, optimizer update included
  # (measured 15% faster than compiling the gradients alone); with several,
  # only the gradients, as the update all-reduces across replicas.
  xla = use_xla(config, strategy)
  whole_step_xla = xla and strategy.num_replicas_in_sync == 1
  compute_gradients = (
      tf.function(gradients, jit_compile=True)
      if xla and not whole_step_xla else gradients
  )

  def replica_step(batch):
    step = optimizer.iterations
    beta = objectives.beta_schedule(
        step, config.loss.beta, config.loss.warmup_steps
    )
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    seed = tf.random.experimental.stateless_fold_in(
        tf.random.experimental.stateless_fold_in(base_seed, step), replica
    )
    grads, sums = compute_gradients(batch, beta, seed)
    if clip_global_batch:  # See make_optimizer: clip(g, c) = N clip(g/N, c/N).
      grads = _replica_share_of_sum(grads, strategy.num_replicas_in_sync)
    optimizer.apply(grads, model.trainable_variables)
    sums["beta"] = tf.cast(beta, tf.float32) * sums["count"]
    return sums

  run_replica = (
      tf.function(replica_step, jit_compile=True) if whole_step_xla
      else replica_step
  )

  @tf.function
  def train_step(batch):
    sums = strategy.run(run_replica, args=(batch,))
    return {
        k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
        for k, v in sums.items()
    }

  return train_step


def _epoch_dataset(state, epoch):
  config = state.config
  seed = int(config.seed) * 1_000_003 + int(epoch)
  fn = data_lib.make_dataset_fn(
      state.splits.train, config.train.batch_size, True, seed, config
  )
  return state.strategy.distribute_datasets_from_function(fn)


def _means(sums):
  count = max(float(sums.pop("count")), 1.0)
  return {k: float(v) / count for k, v in sums.items()}


def _check_finite(values, step, state):
  bad = {k: v for k, v in values.items() if not np.isfinite(v)}
  if bad:
    where = state.manager.latest_checkpoint or "none was written yet"
    raise NonFiniteLossError(
        f"Training stopped at step {step}: non-finite {bad}. Nothing was "
        f"saved after the last good checkpoint ({where})."
    )


def _save(state, manager):
  manager.save(checkpoint_number=state.step)
  if not state.is_chief:  # Scratch copies of non-chief workers are discarded.
    tf.io.gfile.rmtree(manager.directory)


def train(state, verbose=True):
  """Runs (or resumes) training; `verbose` shows a progress bar on the chief.

  Returns:
    The history: one dict per epoch run now, with "epoch", "step", the mean
    training terms ("loss", "kl", ...) and "validation_loss".
  """
  config = state.config
  steps_per_epoch = state.splits.train.x.shape[0] // config.train.batch_size
  if steps_per_epoch < 1:
    raise ValueError(
        f"train.batch_size={config.train.batch_size} exceeds the "
        f"{state.splits.train.x.shape[0]} training examples."
    )
  total_steps = steps_per_epoch * config.train.num_epochs
  train_step = make_train_step(state)
  writer = summaries.make_writer(state.workdir, state.is_chief)
  patience = config.train.early_stopping_patience
  history = []
  every = config.train.checkpoint_every_steps
  while state.step < total_steps:
    if patience and int(state.bad_epochs.numpy()) >= patience:
      logging.info("Early stopping: no validation gain in %d epochs.", patience)
      break
    epoch, skip = divmod(state.step, steps_per_epoch)
    iterator = iter(_epoch_dataset(state, epoch))
    for _ in range(skip):  # Resume mid-epoch where the checkpoint left off.
      next(iterator)
    progress = keras.utils.Progbar(
        steps_per_epoch, verbose=1 if state.is_chief and verbose else 0,
        stateful_metrics=["beta"],
    )
    progress.update(skip)
    totals, start = {}, time.perf_counter()
    for _ in range(steps_per_epoch - skip):
      sums = train_step(next(iterator))
      sums = {k: float(v) for k, v in sums.items()}
      _check_finite(sums, state.step, state)
      for k, v in sums.items():
        totals[k] = totals.get(k, 0.0) + v
      shown = _means(dict(sums))
      progress.add(1, [(k, shown[k]) for k in _progress_keys(shown)])
      if every and state.step % every == 0 and state.step % steps_per_epoch:
        _save(state, state.manager)
    seconds = time.perf_counter() - start
    examples = totals.get("count", 0.0)
    train_metrics = _means(totals)
    train_metrics["examples_per_second"] = examples / max(seconds, 1e-9)
    val_metrics = evaluate.validation_metrics(state.model, state.splits, config)
    _check_finite(val_metrics, state.step, state)
    if val_metrics["loss"] < float(state.best_val_loss.numpy()):
      state.best_val_loss.assign(val_metrics["loss"])
      state.bad_epochs.assign(0)
      _save(state, state.best_manager)
    elif state.step >= config.loss.warmup_steps:
      # Patience counts only after the KL warm-up, whose objective moves
      # (van den Berg et al. 2018 likewise stop early only after it).
      state.bad_epochs.assign_add(1)
    _save(state, state.manager)
    history.append(dict(train_metrics, epoch=epoch + 1, step=state.step,
                        validation_loss=val_metrics["loss"]))
    summaries.write_epoch(
        writer, state.step, train_metrics, val_metrics, state.model,
        state.splits, config,
    )
    if state.is_chief:
      logging.info(
          "epoch %d step %d train %s validation %s", epoch + 1, state.step,
          _fmt(train_metrics), _fmt(val_metrics),
      )
  return history


def _progress_keys(values):
  order = ("loss", "reconstruction", "cross_entropy", "kl", "accuracy", "beta")
  return [k for k in order if k in values]


def _fmt(metrics):
  return " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))


def restore_best(state):
  """Loads the best-validation checkpoint into the model, if one exists."""
  if state.best_manager.latest_checkpoint:
    state.checkpoint.restore(
        state.best_manager.latest_checkpoint
    ).assert_existing_objects_matched()


def restore_run(directory):
  """The `State` of a finished run with its best checkpoint loaded.

  Builds the model from the run's own config.json (the config it was trained
  with; fields added since get their old defaults, `workdir.ADDED_FIELDS`),
  on the default strategy.
  """
  keras.backend.clear_session()
  with open(os.path.join(directory, "config.json")) as f:
    config = ml_collections.ConfigDict(
        workdir_lib.with_added_fields(json.load(f)))
  state = build_state(config, directory)
  restore_best(state)
  return state


def train_and_evaluate(config, workdir, strategy=None):
  """Trains (resuming if possible), evaluates the best model, exports it.

  Returns:
    The test metrics dict (also written to DIR/metrics.json).
  """
  config_checks.validate(config)
  strategy = strategy or distribute.make_strategy(config.runtime)
  is_chief = distribute.is_chief(strategy)
  splits = data_lib.load(config)  # Bad data fails before the workdir is touched.
  workdir_lib.prepare(workdir, config, write=is_chief)
  state = build_state(config, workdir, strategy, splits)
  start_step = state.step
  train(state)
  final_step = state.step
  restore_best(state)
  metrics = evaluate.evaluate_and_write(
      state, {"step": final_step, "steps_this_run": final_step - start_step}
  )
  steps_taken = final_step - start_step
  if config.export.enabled and is_chief and (
      steps_taken or not _already_exported(workdir)
  ):
    from vib_flows import export  # pylint: disable=g-import-not-at-top
    path = export.export_model(state.model, config, state.splits.info)
    workdir_lib.write_json_atomic(
        os.path.join(workdir, "export.json"), {"path": path}
    )
    logging.info("Exported the model to %s", path)
  return metrics


def _already_exported(workdir):
  return tf.io.gfile.exists(os.path.join(workdir, "export.json"))


def evaluate_only(config, workdir):
  """--mode=eval: restores the best (else latest) checkpoint and evaluates."""
  state = _restored_state(config, workdir)
  return evaluate.evaluate_and_write(state, {"steps_this_run": 0})


def export_only(config, workdir):
  """--mode=export: restores the best (else latest) checkpoint and exports."""
  from vib_flows import export  # pylint: disable=g-import-not-at-top
  state = _restored_state(config, workdir)
  return export.export_model(state.model, config, state.splits.info)


def _restored_state(config, workdir):
  config_checks.validate(config)
  strategy = tf.distribute.get_strategy()
  state = build_state(config, workdir, strategy)
  if not (state.manager.latest_checkpoint or
          state.best_manager.latest_checkpoint):
    raise FileNotFoundError(
        f"No checkpoint in {workdir}: train first (--mode=train)."
    )
  restore_best(state)
  return state
