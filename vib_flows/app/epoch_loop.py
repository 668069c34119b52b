"""The epoch loop: `train(state)` runs (or resumes) a run's training.

Keras' `Model.fit` fails under MultiWorkerMirroredStrategy with TF 2.21, so
the loop is the package's own (docs/design.md). Per epoch: the steps, in
calls of `distributed_steps` on the batches of `batch_sources`; validation;
the best weights; early stopping; checkpoints (`checkpoint_io`); summaries.
Calls of steps end at epoch ends and at multiples of
`train.checkpoint_every_steps`; the progress bar, the non-finite check, the
stop signals and checkpoints act between calls.

Reproducibility: data order of epoch e is seeded by (seed, e), posterior noise
of step t on replica r by (seed, t, r), so a resumed run repeats the
uninterrupted one, and the number of steps per call changes nothing.

Faults (docs/reliability.md; exit statuses in `vib_flows.app.faults`):
checkpoints every `train.checkpoint_every_epochs` epochs, every
`train.checkpoint_every_steps` steps and at the end. SIGTERM or SIGINT
(`stop_signals`) stops `train` after the current call with a checkpoint
(`PreemptedError`); under MultiWorkerMirroredStrategy the workers agree on
the stop at each call boundary, so a signal to any of them stops all at the
same step. The weights of the best validation loss are kept in variables
beside the model's (no file per improvement) and are part of every
checkpoint. A non-finite loss, or a non-finite parameter after a call, stops
the run before anything is saved. A failed write stops it with
`WriteFailedError`.
"""

import contextlib
import gc
import os
import signal
import sys
import threading
import time

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from vib_flows.app import batch_sources
from vib_flows.app import checkpoint_io
from vib_flows.app import distribute
from vib_flows.app import evaluate
from vib_flows.app import faults
from vib_flows.app import optimizer_builder
from vib_flows.app import phases
from vib_flows.app import summaries


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite."""


class StopRequest:
  """Set by a stop signal; `train` checks it between calls of steps."""

  def __init__(self):
    self._event = threading.Event()
    self.signal_name = ""

  def set(self, signal_name):
    self.signal_name = signal_name
    self._event.set()

  def is_set(self):
    return self._event.is_set()


@contextlib.contextmanager
def stop_signals():
  """SIGTERM and SIGINT set the yielded `StopRequest` while the block runs.

  While the first call of steps runs (`phases.COMPILING`: its trace and
  compile) a signal stops at once (`phases.Stop`): there is nothing to save
  yet. A second signal ends the process at once under `phases.install()`
  (the command line), else a second SIGINT raises KeyboardInterrupt. Outside
  the main thread signals cannot be caught, and the request is never set.
  """
  request = StopRequest()
  if threading.current_thread() is not threading.main_thread():
    yield request
    return

  def handler(signum, frame):
    del frame
    name = signal.Signals(signum).name
    if phases.current() == phases.COMPILING:  # Nothing to save yet.
      phases.stop_now(name)
      return
    if request.is_set():
      phases.second_signal(name)
      return
    request.set(name)
    logging.warning("%s received: stopping after the current call of steps, "
                    "with a checkpoint.", name)

  previous = {s: signal.signal(s, handler)
              for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield request
  finally:
    for s, h in previous.items():
      signal.signal(s, h)


@contextlib.contextmanager
def objects_left_out_of_full_collections():
  """In the block, Python's full garbage collections skip what exists now.

  When training starts the process holds more than half a million objects
  (TensorFlow's, Keras's, the model's), which all live on. Python's cyclic
  collector walks every one of them at each full collection, which the
  objects that tracing creates set off: 0.3-0.45 s each on the 2-core
  machine, longer than a digits epoch (docs/performance.md). `gc.freeze`
  moves them out of the collector's generations for the block, and
  `gc.unfreeze` gives them back after it, so that those among them that
  become garbage later are still collected (a sweep trains many runs in one
  process). Nothing is frozen when something else froze objects already
  (its choice is kept).
  """
  if gc.get_freeze_count():
    yield
    return
  gc.freeze()
  try:
    yield
  finally:
    gc.unfreeze()


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


def _agreed(strategy, value, op=tf.distribute.ReduceOp.MEAN):
  """`value` made identical on every worker: its mean (or `op`) over them.

  Each worker computes the validation loss itself; averaging makes the early
  stopping and best-weights decisions the same on all of them, whatever the
  rounding of each machine's CPU. With `op` SUM, a 0/1 flag set on any
  worker is positive on all.
  """
  if distribute.num_workers(strategy) <= 1:
    return value
  per_replica = strategy.run(lambda: tf.constant(value, tf.float32))
  return float(strategy.reduce(op, per_replica, axis=None))


def _stop_agreed(state, stop):
  """Whether any worker was asked to stop (one all-reduce per call)."""
  if stop is None:
    return False
  return _agreed(state.strategy, float(stop.is_set()),
                 tf.distribute.ReduceOp.SUM) > 0


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


def _preempted(state, stop, saved_step):
  """Saves (unless saved at this step); returns the `PreemptedError`."""
  if state.step != saved_step:
    checkpoint_io.save(state)
  path = os.path.join(checkpoint_io.checkpoint_dir(state.workdir),
                      f"ckpt-{state.step}")
  why = (f"by {stop.signal_name}" if stop.is_set()
         else "because another worker received a stop signal")
  return faults.PreemptedError(
      f"Stopped {why} after step {state.step}; checkpoint {path} written. "
      "Run the same command again to resume from it.")


def check_batches(config, splits):
  """Refuses a batch larger than the training split (no step per epoch).

  Raises:
    faults.ConfigError: train.batch_size exceeds the training examples.
  """
  examples = splits.train.num_examples
  if examples // config.train.batch_size < 1:
    raise faults.ConfigError(
        f"train.batch_size={config.train.batch_size} exceeds the {examples} "
        f"training examples of data.name={config.data.name!r}: an epoch "
        f"would have no step; set train.batch_size <= {examples}.")


def _progress_bar_shown(state, verbose):
  """The Keras progress bar: on the chief, to a terminal only.

  Written to a file or a pipe (a scheduler's log), its terminal control
  codes and bars would only clutter the log, which the one line per epoch
  of absl logging already serves.
  """
  return bool(state.is_chief and verbose and sys.stdout.isatty())


def train(state, verbose=True, stop=None):
  """Runs (or resumes) training; `verbose` shows a progress bar on the chief.

  The bar is shown only when stdout is a terminal (`_progress_bar_shown`).

  Per epoch: the steps (in calls of up to `train.steps_per_call`), one pass
  over the validation split, the best weights kept in memory when it
  improves, scalar summaries; every `train.checkpoint_every_epochs` epochs (and
  at the end) a checkpoint; every `train.image_summaries_every_epochs` epochs
  (and at the end) the VAE's pictures in TensorBoard. While it runs, the
  objects that exist when it starts are left out of Python's full garbage
  collections (`objects_left_out_of_full_collections`).

  Args:
    state: the run's `run_state.State`.
    verbose: show a progress bar on the chief.
    stop: a `StopRequest` (`stop_signals`), or None. Once it is set (on any
      worker), training stops at the end of the current call of steps, or
      after the epoch's validation when the call ended the epoch, with a
      checkpoint of that step.

  Returns:
    The history: one dict per epoch run now, with "epoch", "step", the mean
    training terms ("loss", "kl", ...) and "validation_loss".

  Raises:
    faults.PreemptedError: `stop` was set; the checkpoint is written.
    faults.WriteFailedError: a checkpoint or summary write failed.
    NonFiniteLossError: a loss term or parameter became NaN or infinite.
  """
  with objects_left_out_of_full_collections():
    return _train(state, verbose, stop)


def _train(state, verbose, stop):
  """The body of `train` (its docstring describes it)."""
  config = state.config
  check_batches(config, state.splits)
  steps_per_epoch = state.splits.train.x.shape[0] // config.train.batch_size
  num_epochs = config.train.num_epochs
  total_steps = steps_per_epoch * num_epochs
  batches = batch_sources.batch_source(state)
  with faults.writing("TensorBoard summaries",
                      os.path.join(state.workdir, "tensorboard")):
    writer = summaries.make_writer(state.workdir, state.is_chief)
  patience = config.train.early_stopping_patience
  history = []
  saved_step = state.step
  compiled = False
  while state.step < total_steps:
    if patience and int(state.bad_epochs.numpy()) >= patience:
      logging.info("Early stopping: no validation gain in %d epochs.", patience)
      break
    epoch, skip = divmod(state.step, steps_per_epoch)
    batches.start(epoch, skip)
    progress = keras.utils.Progbar(
        steps_per_epoch,
        verbose=1 if _progress_bar_shown(state, verbose) else 0,
        stateful_metrics=["beta"],
    )
    progress.update(skip)
    totals, start = {}, time.perf_counter()
    stopping = False
    for first, last in _call_lengths(
        state.step, (epoch + 1) * steps_per_epoch,
        config.train.steps_per_call, config.train.checkpoint_every_steps):
      if not compiled:
        phases.enter(phases.COMPILING)  # The first call traces, compiles.
      sums = batches.run(last - first)
      if not compiled:
        compiled = True
        phases.enter(phases.TRAINING)
      sums = {k: float(v) for k, v in sums.items()}
      _check_finite(sums, f"steps {first + 1}-{last}", state)
      sums.pop("nonfinite_parameters")
      for k, v in sums.items():
        totals[k] = totals.get(k, 0.0) + v
      shown = _means(dict(sums))
      progress.add(last - first, [(k, shown[k]) for k in _progress_keys(shown)])
      every = config.train.checkpoint_every_steps
      if every and last % every == 0 and last % steps_per_epoch:
        checkpoint_io.save(state)
        saved_step = state.step
      stopping = _stop_agreed(state, stop)
      if stopping and last % steps_per_epoch:  # Mid-epoch: stop now.
        raise _preempted(state, stop, saved_step)
      if stopping:  # The call ended the epoch: validate it first.
        break
    seconds = time.perf_counter() - start
    examples = totals.get("count", 0.0)
    train_metrics = _means(totals)
    train_metrics["examples_per_second"] = examples / max(seconds, 1e-9)
    # With train.ema_decay the averaged weights are validated and kept.
    with optimizer_builder.averaged_weights(state.model, state.optimizer):
      val_metrics = evaluate.validation_metrics(state.model, state.splits,
                                                config)
      _check_finite(val_metrics, f"the validation after epoch {epoch + 1}",
                    state)
      val_loss = _agreed(state.strategy, val_metrics["loss"])
      improved = val_loss < float(state.best_val_loss.numpy())
      if improved:
        state.keep_best()
    if improved:
      state.best_val_loss.assign(val_loss)
      state.bad_epochs.assign(0)
    elif state.step >= state.model.warmup_steps:
      # Patience counts only after the KL warm-up, whose objective moves
      # (van den Berg et al. 2018 likewise stop early only after it).
      state.bad_epochs.assign_add(1)
    last_epoch = epoch + 1 == num_epochs or (
        patience and int(state.bad_epochs.numpy()) >= patience)
    if last_epoch or _due(epoch + 1, config.train.checkpoint_every_epochs):
      checkpoint_io.save(state)
      saved_step = state.step
    history.append(dict(train_metrics, epoch=epoch + 1, step=state.step,
                        validation_loss=val_metrics["loss"]))
    images = last_epoch or _due(epoch + 1,
                                config.train.image_summaries_every_epochs)
    with faults.writing("TensorBoard summaries",
                        os.path.join(state.workdir, "tensorboard")):
      summaries.write_epoch(
          writer, state.step, train_metrics, val_metrics, state.model,
          state.splits, config, images=images,
      )
    if state.is_chief:
      logging.info(
          "epoch %d step %d train %s validation %s", epoch + 1, state.step,
          _fmt(train_metrics), _fmt(val_metrics),
      )
    if stopping or _stop_agreed(state, stop):
      raise _preempted(state, stop, saved_step)
  if state.step != saved_step:  # Stopped between checkpoint epochs.
    checkpoint_io.save(state)
  return history


def _progress_keys(values):
  order = ("loss", "reconstruction", "cross_entropy", "kl", "accuracy", "beta")
  return [k for k in order if k in values]


def _fmt(metrics):
  return " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
