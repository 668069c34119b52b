"""The run's modes: train (then evaluate and export), eval and export.

`train_and_evaluate`, `evaluate_only` and `export_only` are what
`--mode=train|eval|export` of the command line (`vib_flows.app.cli`) runs.
Each goes through the phases of `vib_flows.app.phases` (loading, building,
training, evaluating, exporting): SIGTERM or SIGINT stops the training after
the current call with a checkpoint (`epoch_loop.stop_signals`,
`faults.PreemptedError`) and the other phases at once
(`phases.StoppedError`). A second training process on the workdir is refused
(`workdir.lock`).
"""

import os

from absl import logging
import tensorflow as tf

from vib_flows import data as data_lib
from vib_flows.app import checkpoint_io
from vib_flows.app import config_checks
from vib_flows.app import distribute
from vib_flows.app import epoch_loop
from vib_flows.app import evaluate
from vib_flows.app import faults
from vib_flows.app import phases
from vib_flows.app import run_state
from vib_flows.app import workdir as workdir_lib


@phases.stoppable
def train_and_evaluate(config, workdir, strategy=None):
  """Trains (resuming if possible), evaluates the best model, exports it.

  Only the chief evaluates and exports: evaluation needs no other worker, and
  repeating the importance-weighted test evaluation on every worker would
  only cost time. The other workers return once training is done. The chief
  holds the workdir's lock (`workdir.lock`) for the whole run; SIGTERM and
  SIGINT stop the training with a checkpoint (`epoch_loop.stop_signals`).

  Returns:
    The test metrics dict (also written to DIR/metrics.json); {} on workers
    other than the chief.

  A bad config or bad data fails before the workdir is touched; a start
  that fails later, before training begins (building the model, restoring
  a checkpoint), leaves the workdir as it found it: config.json is written
  once the model is built, and what the start created is removed
  (`workdir.undone_unless_started`).

  Raises:
    faults.RunStoppedError: preempted, a write failed, the workdir is locked or
      its checkpoints are unreadable (each with its exit status); a config
      mistake (`faults.ConfigError`) or bad data (`faults.DataError`).
  """
  config_checks.validate(config)
  with faults.mistakes_are(faults.ConfigError):
    strategy = strategy or distribute.make_strategy(config.runtime)
    distribute.check_batch_size(config.train.batch_size, strategy)
  is_chief = distribute.is_chief(strategy)
  # Bad data fails before the workdir is touched.
  phases.enter(phases.LOADING, mode="train")
  splits = data_lib.load(config)
  epoch_loop.check_batches(config, splits)
  if not is_chief:
    return _train_and_evaluate(config, workdir, strategy, splits, False,
                               started=lambda: None)
  with workdir_lib.undone_unless_started(workdir) as started:
    with workdir_lib.lock(workdir):
      return _train_and_evaluate(config, workdir, strategy, splits, True,
                                 started)


def _train_and_evaluate(config, workdir, strategy, splits, is_chief, started):
  workdir_lib.prepare(workdir, config, write=False)
  phases.enter(phases.BUILDING)
  state = run_state.build_state(config, workdir, strategy, splits)
  if is_chief:  # Once the model is built and its checkpoint restored.
    workdir_lib.write_config(workdir, config)
  started()
  start_step = state.step
  with epoch_loop.stop_signals() as stop:
    epoch_loop.train(state, stop=stop)
  phases.enter(phases.EVALUATING)
  if stop.is_set():  # After the trainer's last look: stop before evaluating.
    phases.stop_now(stop.signal_name)
  final_step = state.step
  if not is_chief:
    logging.info("Worker %d: training done; the chief evaluates and exports.",
                 distribute.worker_id(strategy))
    return {}
  run_state.load_evaluated_weights(state)
  # Evaluation errors are not write errors: only OSError (metrics.json is
  # atomic, `workdir.write_json_atomic`; the pictures are PNG files).
  try:
    metrics = evaluate.evaluate_and_write(
        state, {"step": final_step, "steps_this_run": final_step - start_step}
    )
  except OSError as error:
    raise faults.WriteFailedError(
        f"Could not write the run pictures to {workdir}: "
        f"{faults.reason(error)}.") from error
  steps_taken = final_step - start_step
  if config.export.enabled and (
      steps_taken or not _already_exported(workdir)
  ):
    from vib_flows.app import export  # pylint: disable=g-import-not-at-top
    phases.enter(phases.EXPORTING)
    with faults.writing("SavedModel export", config.export.base_dir):
      path = export.export_model(state.model, config, state.splits.info)
    workdir_lib.write_json_atomic(
        os.path.join(workdir, "export.json"), {"path": path}
    )
    logging.info("Exported the model to %s", path)
  return metrics


def _already_exported(workdir):
  return tf.io.gfile.exists(os.path.join(workdir, "export.json"))


@phases.stoppable
def evaluate_only(config, workdir):
  """--mode=eval: restores the latest checkpoint, evaluates its weights.

  The weights `run_state.load_evaluated_weights` picks: the best
  validation weights (or the last, with `train.keep_best` off), averaged when
  `train.ema_decay` is on. The config must be the run's
  (`workdir.check_same_run`): only its runtime, export and eval fields and
  the train fields of how long and how often may differ. Eval fields that
  differ from the run's are recorded in metrics.json as "eval_config"
  ({field: {"run": value in DIR/config.json, "this_eval": value used}}).

  Raises:
    faults.ConfigError: the config learns another run than DIR's.
    faults.UsageError: DIR holds no checkpoint.
  """
  changed = _check_restorable(config, workdir, "eval")
  state = _restored_state(config, workdir, "eval")
  phases.enter(phases.EVALUATING)
  run_info = {"steps_this_run": 0}
  if changed:
    run_info["eval_config"] = {
        field: {"run": before, "this_eval": after}
        for field, before, after in changed}
    logging.warning("Evaluating with eval fields other than the run's: %s "
                    "(recorded in metrics.json as eval_config).",
                    workdir_lib.describe(changed, limit=len(changed)))
  return evaluate.evaluate_and_write(state, run_info)


@phases.stoppable
def export_only(config, workdir):
  """--mode=export: restores the latest checkpoint, exports its weights.

  The same weights as `evaluate_only`, and the same check of the config.

  Raises:
    faults.ConfigError: the config learns another run than DIR's.
    faults.UsageError: DIR holds no checkpoint.
  """
  from vib_flows.app import export  # pylint: disable=g-import-not-at-top
  _check_restorable(config, workdir, "export")
  state = _restored_state(config, workdir, "export")
  phases.enter(phases.EXPORTING)
  with faults.writing("SavedModel export", config.export.base_dir):
    return export.export_model(state.model, config, state.splits.info)


def _check_restorable(config, workdir, mode):
  """A valid config of DIR's run, and DIR/checkpoints; `check_same_run`'s."""
  config_checks.validate(config)
  if not tf.io.gfile.isdir(checkpoint_io.checkpoint_dir(workdir)):
    raise faults.UsageError(
        f"No checkpoint in {workdir}: train first (--mode=train).")
  return workdir_lib.check_same_run(workdir, config, mode)


def _restored_state(config, workdir, mode):
  strategy = tf.distribute.get_strategy()
  phases.enter(phases.LOADING, mode=mode)
  splits = data_lib.load(config)
  phases.enter(phases.BUILDING)
  state = run_state.build_state(config, workdir, strategy, splits)
  if not state.restored:
    raise faults.UsageError(
        f"No checkpoint in {workdir}: train first (--mode=train).")
  run_state.load_evaluated_weights(state)
  return state
