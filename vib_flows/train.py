"""train_and_evaluate(config, workdir).

One custom distributed loop for every strategy.

The model is a single-replica view (its `per_example_loss`); only this module
knows the strategy (TF Model Garden / orbit style). Each replica computes its
per-example losses, scales them for the global batch
(`tf.nn.compute_average_loss`), and the Keras optimizer all-reduces the
gradients. Keras' `Model.fit` fails under MultiWorkerMirroredStrategy with TF
2.21, so `fit` is not used here (docs/design.md).

Steps per call: one `tf.function` call runs up to `train.steps_per_call` steps
in a `tf.while_loop` over the distributed iterator and sums the per-example
terms on the device, so the host waits for the device once per call, not once
per step (Keras' `steps_per_execution`). Calls end at epoch ends and at
multiples of `train.checkpoint_every_steps`; the progress bar, the non-finite
check and checkpoints act between calls.

Reproducibility: data order of epoch e is seeded by (seed, e), posterior noise
of step t on replica r by (seed, t, r), so a resumed run repeats the
uninterrupted one, and the number of steps per call changes nothing. Faults:
checkpoints every `train.checkpoint_every_epochs` epochs, every
`train.checkpoint_every_steps` steps and at the end, written by the chief with
the checkpoint state file updated last, so a kill while writing leaves the
previous checkpoint in force. The weights of the best validation loss are kept
in variables beside the model's (no file per improvement) and are part of
every checkpoint. A non-finite loss, or a non-finite parameter after a call,
stops the run before anything is saved.
"""

import dataclasses
import json
import os
import threading
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
from vib_flows import optimizers
from vib_flows import summaries
from vib_flows import workdir as workdir_lib


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite."""


def make_optimizer(optimizer_config, mixed_precision=False, num_replicas=1):
  """Returns the Keras optimizer named by `optimizer.name`.

  Adam and Adamax are Keras' with the per-variable update as one fused
  TensorFlow kernel (`vib_flows.optimizers`: same maths, a quarter faster
  steps without XLA on the digits VAE).

  `optimizer.clipnorm` = c > 0 clips the global-batch gradient g by its
  global norm, g * min(1, c / ||g||) over all variables together (Keras'
  `global_clipnorm`; Keras' `clipnorm` would clip each variable's gradient
  on its own). Keras clips before its all-reduce, i.e. each replica's share;
  so with N replicas the train step hands every replica g / N, the already
  all-reduced gradient, and the optimizer clips at c / N:
  N * clip(g / N, c / N) = clip(g, c) (`make_train_step`).
  """
  classes = {
      "adam": optimizers.FusedAdam,
      "adamax": optimizers.FusedAdamax,
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
  """Everything a run builds once: strategy, data, model and checkpoints.

  `best_weights` mirror `model.weights` and hold the weights of the best
  validation loss so far (`best_val_loss`); they are saved in every checkpoint.
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
  def has_best(self):
    return bool(np.isfinite(self.best_val_loss.numpy()))


def _checkpoint_dir(workdir, strategy, is_chief):
  """Chief writes to DIR/checkpoints; other workers to a scratch dir.

  Every worker must take part in a save under MultiWorkerMirroredStrategy;
  the scratch copies of non-chief workers are deleted after each save.
  """
  if is_chief:
    return os.path.join(workdir, "checkpoints")
  return os.path.join(workdir, "worker_scratch",
                      f"checkpoints_{distribute.worker_id(strategy)}")


def _set_precision(config):
  policy = "mixed_float16" if config.runtime.mixed_precision else "float32"
  keras.mixed_precision.set_global_policy(policy)


def build_state(config, workdir, strategy=None, splits=None):
  """Builds strategy, data, model, optimizer and restores the latest checkpoint.

  Every worker restores from the chief's DIR/checkpoints (the workdir is on a
  file system all workers share), so all of them resume from the same state.
  """
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
      checkpoint, _checkpoint_dir(workdir, strategy, is_chief), max_to_keep=2,
  )
  state = State(
      config, workdir, strategy, splits, model, optimizer, checkpoint, manager,
      best_weights, best_val_loss, bad_epochs, is_chief, best_weights_step,
  )
  latest = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
  if latest:
    _restore(state, latest)
    logging.info("Restored %s", latest)
  return state


def _restore(state, path):
  """Restores checkpoint `path`, also one from before best weights were in it.

  Such older runs kept the best weights in DIR/best/, a checkpoint of the same
  objects (model, optimizer, best_val_loss, bad_epochs) taken when the
  validation loss improved.
  """
  shapes = dict(tf.train.list_variables(path))
  names = list(shapes)
  if any(name.startswith("best_weights/") for name in names):
    _check_weight_shapes(state, path, shapes)
    state.checkpoint.restore(path).assert_existing_objects_matched()
    return
  legacy = tf.train.Checkpoint(
      model=state.model, optimizer=state.optimizer,
      best_val_loss=state.best_val_loss, bad_epochs=state.bad_epochs,
  )
  legacy_best = tf.train.latest_checkpoint(
      os.path.join(state.workdir, "best"))
  if legacy_best:
    legacy.restore(legacy_best).assert_existing_objects_matched()
    state.keep_best()
  legacy.restore(path).assert_existing_objects_matched()


def _check_weight_shapes(state, path, shapes):
  """Refuses a checkpoint whose model weights have other shapes than ours.

  The best-weights copy in every checkpoint lists the model's weights in
  order; a run made by a vib_flows whose layers held their weights
  differently (for example one planar layer per map, before a planar stack
  became one layer of K maps) would otherwise fail deep in the restore with
  a bare shape error.

  Raises:
    ValueError: the shapes differ (names the run and both shape lists).
  """
  saved = []
  for i in range(len(shapes)):
    shape = shapes.get(f"best_weights/{i}/.ATTRIBUTES/VARIABLE_VALUE")
    if shape is None:
      break
    saved.append(tuple(shape))
  ours = [tuple(w.shape) for w in state.model.weights]
  if saved != ours:
    raise ValueError(
        f"The checkpoint {path} holds model weights of shapes {saved}, this "
        f"config builds {ours}: the run was made by a vib_flows whose layers "
        "held their weights differently (planar stacks held one layer per "
        "map before they became one layer of K maps), or with another model. "
        "Train it again in a new --workdir.")


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


def _make_distributed_step(state):
  """Returns the Python function of one distributed step.

  See make_train_step.
  """
  config, model, optimizer, strategy = (
      state.config, state.model, state.optimizer, state.strategy
  )
  global_batch = config.train.batch_size
  clip_global_batch = bool(config.optimizer.clipnorm) and (
      strategy.num_replicas_in_sync > 1)

  def gradients(batch, beta, seed):
    # The same loss and scaling as the model's own `train_step` (fit).
    with tf.GradientTape() as tape:
      scaled, sums = models.scaled_loss(
          model, batch, beta, seed, global_batch, optimizer=optimizer)
    grads = tape.gradient(scaled, model.trainable_variables)
    return grads, sums

  # With one replica XLA compiles the whole step, optimizer update included
  # (measured 15% faster than compiling the gradients alone); with several,
  # only the gradients, as the update all-reduces across replicas.
  xla = use_xla(config, strategy)
  whole_step_xla = xla and strategy.num_replicas_in_sync == 1
  compute_gradients = (
      tf.function(gradients, jit_compile=True, autograph=False)
      if xla and not whole_step_xla else gradients
  )

  def replica_step(batch):
    step = optimizer.iterations
    beta = objectives.beta_schedule(
        step, config.loss.beta, config.loss.warmup_steps
    )
    seed = models.step_seed(config.seed, step)
    grads, sums = compute_gradients(batch, beta, seed)
    if clip_global_batch:  # See make_optimizer: clip(g, c) = N clip(g/N, c/N).
      grads = _replica_share_of_sum(grads, strategy.num_replicas_in_sync)
    optimizer.apply(grads, model.trainable_variables)
    sums["beta"] = tf.cast(beta, tf.float32) * sums["count"]
    return sums

  run_replica = (
      tf.function(replica_step, jit_compile=True, autograph=False)
      if whole_step_xla else replica_step
  )

  def distributed_step(batch):
    sums = strategy.run(run_replica, args=(batch,))
    return {
        k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
        for k, v in sums.items()
    }

  return distributed_step


def make_train_step(state):
  """Returns a tf.function running one distributed step; gives summed terms.

  The returned function takes a distributed batch and returns a dict of the
  per-example terms summed over the global batch (plus "count" and "beta",
  beta times count).
  """
  return tf.function(_make_distributed_step(state), autograph=False)


def _make_steps(state):
  """Returns `run_steps(next_batch, num_steps)`, traced into a tf.function.

  `next_batch(i)` gives the distributed batch of the call's i-th step; the
  result is the summed terms as `make_train_loop` describes.
  """
  step = _make_distributed_step(state)
  variables = state.model.trainable_variables
  keys = tuple(state.model.term_names) + ("count", "beta")

  def run_steps(next_batch, num_steps):
    def body(i, sums):
      new = step(next_batch(i))
      if set(new) != set(keys):
        raise ValueError(f"The model's step gives terms {sorted(new)}, "
                         f"expected {sorted(keys)} (its term_names).")
      return i + 1, {k: sums[k] + new[k] for k in keys}

    zeros = {k: tf.constant(0.0, tf.float32) for k in keys}
    _, sums = tf.while_loop(lambda i, _: i < num_steps, body,
                            (tf.constant(0, tf.int32), zeros))
    sums["nonfinite_parameters"] = tf.add_n([
        tf.reduce_sum(tf.cast(~tf.math.is_finite(v), tf.float32))
        for v in variables
    ])
    return sums

  return run_steps


def make_train_loop(state):
  """Returns a tf.function running several distributed steps in one call.

  `train_steps(iterator, num_steps)` runs `num_steps` >= 1 steps (a
  `tf.while_loop`; `num_steps` is a tensor, so one trace serves every length)
  and returns the per-example terms summed over the steps and the global
  batches (with "count", and "beta" times count), plus "nonfinite_parameters":
  the number of NaN or infinite entries of the trainable variables after the
  last step. Nothing is copied to the host between the steps.
  """
  run_steps = _make_steps(state)

  # No autograph: the loop is written as a tf.while_loop, and converting the
  # model's code (Keras, TFP) only adds tracing time. The step is traced once.
  @tf.function(autograph=False)
  def train_steps(iterator, num_steps):
    return run_steps(lambda i: next(iterator), num_steps)

  return train_steps


def make_gathering_train_loop(state):
  """`make_train_loop` with each batch gathered from tensors in the loop.

  `train_steps(features, order, first, num_steps)` runs steps first+1 ..
  first+num_steps of an epoch (counted from 0 within it): step j reads the
  rows order[j B : (j + 1) B] of every tensor of `features` (the training
  split: "x" [N, ...] float32, "y" [N] int32), B = train.batch_size; `order`
  [N] is `data.epoch_order`, the permutation the epoch's tf.data pipeline
  would read. Returns what `make_train_loop`'s function returns. One
  replica only (`data.gathers_in_graph`).
  """
  run_steps = _make_steps(state)
  batch_size = int(state.config.train.batch_size)

  @tf.function(autograph=False)
  def train_steps(features, order, first, num_steps):
    def next_batch(i):
      rows = tf.slice(order, [(first + i) * batch_size], [batch_size])
      return {k: tf.gather(v, rows) for k, v in features.items()}
    return run_steps(next_batch, num_steps)

  return train_steps


def _epoch_seed(config, epoch):
  """The seed of epoch `epoch`'s data order (0-based epoch)."""
  return int(config.seed) * 1_000_003 + int(epoch)


def _epoch_dataset(state, epoch):
  fn = data_lib.make_dataset_fn(
      state.splits.train, state.config.train.batch_size, True,
      _epoch_seed(state.config, epoch), state.config
  )
  return state.strategy.distribute_datasets_from_function(fn)


class _EpochSteps:
  """Runs calls of one epoch's steps from wherever the batches come from.

  In-graph gathering when `data.gathers_in_graph` allows it (one replica,
  fixed in-memory data), else the epoch's distributed tf.data iterator;
  both read the same batches in the same order. When gathering, the next
  epoch's order (`data.epoch_order`, about 8 ms of tf.data on the host) is
  computed by a background thread while this epoch's steps run.
  """

  def __init__(self, state):
    self._state = state
    self._num_examples = state.splits.train.x.shape[0]
    self.gathers = data_lib.gathers_in_graph(
        state.splits.train, state.config,
        state.strategy.num_replicas_in_sync, state.splits.info)
    if self.gathers:
      self._loop = make_gathering_train_loop(state)
      self._features = {
          k: tf.constant(v)
          for k, v in data_lib.example_arrays(state.splits.train).items()}
      self._next_order = None  # (epoch, thread, {"order": tensor}).
    else:
      self._loop = make_train_loop(state)

  def _order(self, epoch):
    config = self._state.config
    return data_lib.epoch_order(self._num_examples,
                                _epoch_seed(config, epoch), config)

  def _prepare_order(self, epoch):
    result = {}
    thread = threading.Thread(
        target=lambda: result.update(order=self._order(epoch)), daemon=True)
    thread.start()
    self._next_order = (epoch, thread, result)

  def start(self, epoch, skip):
    """Starts epoch `epoch` (0-based) after its first `skip` steps."""
    if self.gathers:
      order = None
      if self._next_order is not None and self._next_order[0] == epoch:
        _, thread, result = self._next_order
        thread.join()
        order = result.get("order")  # None if the thread failed: again here.
      self._epoch_order = self._order(epoch) if order is None else order
      self._done = skip
      self._prepare_order(epoch + 1)
    else:
      self._iterator = iter(_epoch_dataset(self._state, epoch))
      for _ in range(skip):  # Resume mid-epoch where the checkpoint left off.
        next(self._iterator)

  def run(self, num_steps):
    """Runs the epoch's next `num_steps` steps; returns the summed terms."""
    if not self.gathers:
      return self._loop(self._iterator, tf.constant(num_steps, tf.int32))
    sums = self._loop(self._features, self._epoch_order,
                      tf.constant(self._done, tf.int32),
                      tf.constant(num_steps, tf.int32))
    self._done += num_steps
    return sums


def _means(sums):
  count = max(float(sums.pop("count")), 1.0)
  return {k: float(v) / count for k, v in sums.items()}


def _check_finite(values, steps, state):
  """Raises NonFiniteLossError if a loss term or parameter is NaN or infinite.

  Args:
    values: dict of host floats (loss terms; "nonfinite_parameters" counts).
    steps: description of the steps that produced them ("steps 11-20").
    state: the run's `State` (names the last good checkpoint).
  """
  bad = {k: v for k, v in values.items()
         if not np.isfinite(v) or (k == "nonfinite_parameters" and v)}
  if bad:
    where = state.manager.latest_checkpoint or "none was written yet"
    raise NonFiniteLossError(
        f"Training stopped in {steps}: non-finite {bad}. Nothing was "
        f"saved after the last good checkpoint ({where})."
    )


def _save(state):
  state.manager.save(checkpoint_number=state.step)
  if not state.is_chief:  # Scratch copies of non-chief workers are discarded.
    tf.io.gfile.rmtree(state.manager.directory)


def _agreed(strategy, value):
  """`value` made identical on every worker: the mean over the workers.

  Each worker computes the validation loss itself; averaging makes the early
  stopping and best-weights decisions the same on all of them, whatever the
  rounding of each machine's CPU.
  """
  if distribute.num_workers(strategy) <= 1:
    return value
  per_replica = strategy.run(lambda: tf.constant(value, tf.float32))
  return float(strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica,
                               axis=None))


def _call_lengths(first_step, last_step, steps_per_call, every_steps):
  """Splits steps (first_step, last_step] into calls of at most steps_per_call.

  Calls also end at the multiples of `every_steps` (mid-epoch checkpoints).
  Returns a list of (start, end) pairs: the call runs steps start+1..end.
  """
  calls, start = [], first_step
  while start < last_step:
    end = min(last_step, start + steps_per_call)
    if every_steps:
      end = min(end, (start // every_steps + 1) * every_steps)
    calls.append((start, end))
    start = end
  return calls


def _due(epoch, every):
  """True after epoch `epoch` (1-based) when `every` > 0 divides it."""
  return every > 0 and epoch % every == 0


def train(state, verbose=True):
  """Runs (or resumes) training; `verbose` shows a progress bar on the chief.

  Per epoch: the steps (in calls of up to `train.steps_per_call`), one pass
  over the validation split, the best weights kept in memory when it
  improves, scalar summaries; every `train.checkpoint_every_epochs` epochs (and
  at the end) a checkpoint; every `train.image_summaries_every_epochs` epochs
  (and at the end) the VAE's pictures in TensorBoard.

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
  num_epochs = config.train.num_epochs
  total_steps = steps_per_epoch * num_epochs
  epoch_steps = _EpochSteps(state)
  writer = summaries.make_writer(state.workdir, state.is_chief)
  patience = config.train.early_stopping_patience
  history = []
  saved_step = state.step
  while state.step < total_steps:
    if patience and int(state.bad_epochs.numpy()) >= patience:
      logging.info("Early stopping: no validation gain in %d epochs.", patience)
      break
    epoch, skip = divmod(state.step, steps_per_epoch)
    epoch_steps.start(epoch, skip)
    progress = keras.utils.Progbar(
        steps_per_epoch, verbose=1 if state.is_chief and verbose else 0,
        stateful_metrics=["beta"],
    )
    progress.update(skip)
    totals, start = {}, time.perf_counter()
    for first, last in _call_lengths(
        state.step, (epoch + 1) * steps_per_epoch,
        config.train.steps_per_call, config.train.checkpoint_every_steps):
      sums = epoch_steps.run(last - first)
      sums = {k: float(v) for k, v in sums.items()}
      _check_finite(sums, f"steps {first + 1}-{last}", state)
      sums.pop("nonfinite_parameters")
      for k, v in sums.items():
        totals[k] = totals.get(k, 0.0) + v
      shown = _means(dict(sums))
      progress.add(last - first, [(k, shown[k]) for k in _progress_keys(shown)])
      every = config.train.checkpoint_every_steps
      if every and last % every == 0 and last % steps_per_epoch:
        _save(state)
        saved_step = state.step
    seconds = time.perf_counter() - start
    examples = totals.get("count", 0.0)
    train_metrics = _means(totals)
    train_metrics["examples_per_second"] = examples / max(seconds, 1e-9)
    val_metrics = evaluate.validation_metrics(state.model, state.splits, config)
    _check_finite(val_metrics, f"the validation after epoch {epoch + 1}",
                  state)
    val_loss = _agreed(state.strategy, val_metrics["loss"])
    if val_loss < float(state.best_val_loss.numpy()):
      state.best_val_loss.assign(val_loss)
      state.bad_epochs.assign(0)
      state.keep_best()
    elif state.step >= config.loss.warmup_steps:
      # Patience counts only after the KL warm-up, whose objective moves
      # (van den Berg et al. 2018 likewise stop early only after it).
      state.bad_epochs.assign_add(1)
    last_epoch = epoch + 1 == num_epochs or (
        patience and int(state.bad_epochs.numpy()) >= patience)
    if last_epoch or _due(epoch + 1, config.train.checkpoint_every_epochs):
      _save(state)
      saved_step = state.step
    history.append(dict(train_metrics, epoch=epoch + 1, step=state.step,
                        validation_loss=val_metrics["loss"]))
    images = last_epoch or _due(epoch + 1,
                                config.train.image_summaries_every_epochs)
    summaries.write_epoch(
        writer, state.step, train_metrics, val_metrics, state.model,
        state.splits, config, images=images,
    )
    if state.is_chief:
      logging.info(
          "epoch %d step %d train %s validation %s", epoch + 1, state.step,
          _fmt(train_metrics), _fmt(val_metrics),
      )
  if state.step != saved_step:  # Stopped between checkpoint epochs.
    _save(state)
  return history


def _progress_keys(values):
  order = ("loss", "reconstruction", "cross_entropy", "kl", "accuracy", "beta")
  return [k for k in order if k in values]


def _fmt(metrics):
  return " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))


def restore_best(state):
  """Loads the best-validation weights into the model, if there are any."""
  if state.has_best:
    for weight, best in zip(state.model.weights, state.best_weights):
      weight.assign(best)


def restore_run(directory):
  """The `State` of a finished run with its best checkpoint loaded.

  Builds the model from the run's own config.json (the config it was trained
  with; fields added since get their old defaults, `workdir.ADDED_FIELDS`),
  on the default strategy.
  """
  keras.backend.clear_session()
  with open(os.path.join(directory, "config.json")) as f:
    saved = json.load(f)
  workdir_lib.check_loadable(saved, directory)
  config = ml_collections.ConfigDict(workdir_lib.with_added_fields(saved))
  state = build_state(config, directory)
  restore_best(state)
  return state


def train_and_evaluate(config, workdir, strategy=None):
  """Trains (resuming if possible), evaluates the best model, exports it.

  Only the chief evaluates and exports: evaluation needs no other worker, and
  repeating the importance-weighted test evaluation on every worker would
  only cost time. The other workers return once training is done.

  Returns:
    The test metrics dict (also written to DIR/metrics.json); {} on workers
    other than the chief.
  """
  config_checks.validate(config)
  strategy = strategy or distribute.make_strategy(config.runtime)
  is_chief = distribute.is_chief(strategy)
  # Bad data fails before the workdir is touched.
  splits = data_lib.load(config)
  workdir_lib.prepare(workdir, config, write=is_chief)
  state = build_state(config, workdir, strategy, splits)
  start_step = state.step
  train(state)
  final_step = state.step
  if not is_chief:
    logging.info("Worker %d: training done; the chief evaluates and exports.",
                 distribute.worker_id(strategy))
    return {}
  restore_best(state)
  metrics = evaluate.evaluate_and_write(
      state, {"step": final_step, "steps_this_run": final_step - start_step}
  )
  steps_taken = final_step - start_step
  if config.export.enabled and (
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
  if not tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")):
    raise FileNotFoundError(
        f"No checkpoint in {workdir}: train first (--mode=train)."
    )
  restore_best(state)
  return state
