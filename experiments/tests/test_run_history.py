"""A resumed run's whole history: its summaries, the baseline's CSV.

A run trained by several processes must report every epoch's validation
loss in order and the training time of the epochs that led to its weights,
whichever process ran them (experiments/sweeps/run_history.py,
baseline.whole_history); runs whose history is lost say so.
"""

import json

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from experiments.sweeps import baseline
from experiments.sweeps import run
from experiments.sweeps import run_history
from tests import helpers


def _write_events(path, epochs):
  """An events file of (wall time, step, validation loss) records."""
  with tf.io.TFRecordWriter(str(path)) as writer:
    for wall_time, step, loss in epochs:
      event = tf.compat.v1.Event(wall_time=wall_time, step=step)
      event.summary.value.add(tag=run_history.VALIDATION_TAG,
                              tensor=tf.make_tensor_proto(np.float32(loss)))
      event.summary.value.add(tag="train/loss",
                              tensor=tf.make_tensor_proto(np.float32(-1.0)))
      writer.write(event.SerializeToString())


def _first_process(run_dir):
  """DIR/tensorboard with a first process's epochs 1-4 (steps 10-40), 10 s each.

  Killed after a checkpoint at epoch 2 (its epochs 3 and 4 are run again by
  the next process of a test).
  """
  board = run_dir / "tensorboard"
  board.mkdir()
  _write_events(board / "events.out.tfevents.1.host.1.0.v2",
                [(100.0, 10, 5.0), (110.0, 20, 4.0), (120.0, 30, 3.9),
                 (130.0, 40, 3.8)])
  return board


def test_epochs_run_twice_count_as_last_written_and_once(tmp_path):
  board = _first_process(tmp_path)
  # The second process: epochs 3-5 again, 20 s each.
  _write_events(board / "events.out.tfevents.2.host.2.0.v2",
                [(500.0, 30, 3.5), (520.0, 40, 3.0), (540.0, 50, 2.5)])
  assert run_history.validation_losses(str(tmp_path)) == [
      5.0, 4.0, 3.5, 3.0, 2.5]
  # Epochs 2, 4, 5 have a predecessor in their file (10, 20, 20 s); the
  # first epoch of each process counts as the median epoch (20 s).
  assert [e["seconds"] for e in run_history.epochs(str(tmp_path))] == [
      20.0, 10.0, 20.0, 20.0, 20.0]
  assert run_history.train_seconds(str(tmp_path)) == 90.0


def test_a_run_without_summaries_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="No TensorBoard events"):
    run_history.validation_losses(str(tmp_path))
  assert run_history.whole(str(tmp_path), final_step=20, epochs_run=2) is None


def test_the_whole_history_holds_every_epoch_or_is_unknown(tmp_path):
  board = _first_process(tmp_path)
  # A second process that stopped (early) at step 30: step 40 of the first
  # process is not part of the run.
  _write_events(board / "events.out.tfevents.2.host.2.0.v2",
                [(500.0, 30, 3.5)])
  history = run_history.whole(str(tmp_path), final_step=30, epochs_run=3)
  assert history["validation_loss"] == [5.0, 4.0, 3.5]
  # A lost epoch (or other epoch lengths) makes the history unknown.
  assert run_history.whole(str(tmp_path), final_step=60, epochs_run=6) is None
  assert run_history.whole(str(tmp_path), final_step=30, epochs_run=2) is None
  # A file torn by a kill: its records up to the tear are read.
  torn = board / "events.out.tfevents.3.host.3.0.v2"
  _write_events(torn, [(600.0, 40, 3.0), (610.0, 50, 2.9)])
  torn.write_bytes(torn.read_bytes()[:-7])
  assert run_history.validation_losses(str(tmp_path)) == [
      5.0, 4.0, 3.5, 3.0]


@pytest.mark.slow
def test_a_resumed_run_reports_every_epoch_of_its_processes(tmp_path):
  """Two epochs, then the same run continued to four by a second call."""
  directory = str(tmp_path / "run")
  base = helpers.config("test", **{"train.checkpoint_every_epochs": 1})
  first_config = ml_collections.ConfigDict(base.to_dict())
  first_config.train.num_epochs = 2
  first = run.train_model_run(first_config, directory)
  assert not first["resumed"] and len(first["validation_loss"]) == 2
  base.train.num_epochs = 4
  whole = run.train_model_run(base, directory)
  assert whole["resumed"] and whole["steps_this_run"] == whole["step"] // 2
  assert len(whole["validation_loss"]) == 4
  assert whole["validation_loss"][:2] == pytest.approx(
      first["validation_loss"])
  assert whole["train_seconds_from_summaries"] and whole["history_complete"]
  # The four epochs' durations (tracing is not in them: on these tiny
  # networks it is most of a process's clock).
  epochs = run_history.epochs(directory)
  assert len(epochs) == 4 and all(e["seconds"] > 0 for e in epochs)
  assert whole["train_seconds"] == pytest.approx(
      sum(e["seconds"] for e in epochs))

  # A run written before the history was read from the summaries held only
  # its last process's epochs: the sweep fills the rest in.
  path = tmp_path / "run" / "metrics.json"
  partial = dict(whole, validation_loss=whole["validation_loss"][2:],
                 train_seconds=1.0)
  del partial["train_seconds_from_summaries"], partial["history_complete"]
  path.write_text(json.dumps(partial))
  metrics, added = run.backfill_diagnostics(directory)
  assert added == ["training history"]
  assert metrics["validation_loss"] == pytest.approx(whole["validation_loss"])
  assert metrics["train_seconds"] == pytest.approx(whole["train_seconds"])
  assert json.loads(path.read_text())["validation_loss"] == pytest.approx(
      whole["validation_loss"])
  assert run.backfill_diagnostics(directory)[1] == []  # Read once.


def _write_csv(path, rows):
  lines = ["epoch,accuracy,epoch_seconds,loss,val_accuracy,val_loss"]
  lines += [f"{e},0.5,{s},1.0,0.5,{v}" for e, s, v in rows]
  path.write_text("\n".join(lines) + "\n")


def test_the_baselines_history_keeps_each_epochs_last_row(tmp_path):
  # Epochs 0-2, then epoch 2 again after a resume, and epoch 3.
  _write_csv(tmp_path / baseline.HISTORY_FILE,
             [(0, 2.0, 0.9), (1, 2.0, 0.8), (2, 9.0, 0.75), (2, 3.0, 0.7),
              (3, 3.0, 0.6)])
  assert baseline.whole_history(str(tmp_path)) == {
      "validation_loss": [0.9, 0.8, 0.7, 0.6], "train_seconds": 10.0}
  # A file begun by a resumed process (its first epochs were never logged).
  _write_csv(tmp_path / baseline.HISTORY_FILE, [(85, 2.0, 0.5)])
  assert baseline.whole_history(str(tmp_path)) is None
  # Rows beyond the epochs the run kept (an epoch logged, then killed before
  # its backup, the run ended by early stopping before it) are left out; a
  # missing epoch makes the history unknown.
  _write_csv(tmp_path / baseline.HISTORY_FILE,
             [(0, 2.0, 0.9), (1, 2.0, 0.8), (2, 3.0, 0.7)])
  assert baseline.whole_history(str(tmp_path), epochs_run=2) == {
      "validation_loss": [0.9, 0.8], "train_seconds": 4.0}
  assert baseline.whole_history(str(tmp_path), epochs_run=4) is None


def _write_run(directory, metrics, num_epochs=100, patience=0):
  (directory / "metrics.json").write_text(json.dumps(metrics))
  (directory / "config.json").write_text(json.dumps(
      {"train": {"num_epochs": num_epochs,
                 "early_stopping_patience": patience}}))


def test_a_baseline_resumed_before_its_history_was_kept_is_marked(tmp_path):
  metrics = {"test_accuracy": 0.98, "best_epoch": 3, "epochs_run": 15,
             "train_seconds": 600.0, "validation_loss": [0.1] * 15}
  _write_run(tmp_path, metrics)
  assert baseline.backfill_history(str(tmp_path))
  marked = json.loads((tmp_path / "metrics.json").read_text())
  assert marked["epochs_run"] == 100 and not marked["history_complete"]
  assert marked["best_epoch"] is None and marked["train_seconds"] is None
  assert marked["test_accuracy"] == 0.98
  assert not baseline.backfill_history(str(tmp_path))  # Once.
  # A complete history of the run's own epochs (whatever a later sweep's
  # --epochs), or early stopping (a short history is then no sign of a
  # resume), is left alone.
  _write_run(tmp_path, dict(metrics, validation_loss=[0.1] * 100,
                            epochs_run=100))
  assert not baseline.backfill_history(str(tmp_path))
  _write_run(tmp_path, metrics, patience=5)
  assert not baseline.backfill_history(str(tmp_path))
