"""A run's whole training history, across the processes that trained it.

A run that was stopped and resumed is trained by several processes; each
one's `epoch_loop.train` returns only the epochs it ran, and its clock only
its own time. The run's TensorBoard summaries (DIR/tensorboard, one events
file per process) hold every epoch: the trainer writes "validation/loss" at
the end of each epoch, at the epoch's last step, with the time it was
written. A resumed process starts again from the last checkpoint, so the
epochs after it were run twice; the later writing of a step is the one that
led to the final weights (`epochs`).

The training time of the run (`train_seconds`) is then the sum of its
epochs' durations in that lineage: an epoch's duration is the time between
its summary and the previous one written by the same process; the first
epoch of each process, which has no predecessor in its file (its tracing
and compiling, and the restore), counts as the median epoch of the run.
Work that was thrown away (epochs run twice, time after the last
checkpoint of a stopped process) is not counted, nor is the first call's
tracing beyond a median epoch: the number compares with an uninterrupted
run's clock (`epoch_loop.train` timed around the call, which stays the
measure for runs trained by one process) to within the tracing time. On
the MNIST runs: 1601 s from the summaries against 1603 s by the clock (the
no-flow VAE, 200 epochs), 4483 s against 4511 s (the VIB, 100 epochs).
"""

from collections.abc import Sequence
import glob
import os
import statistics
from typing import Any

import tensorflow as tf

VALIDATION_TAG = "validation/loss"


def _records(run_dir: str, tags: frozenset[str]
             ) -> list[tuple[float, int, str, float, str]]:
  """(wall time, step, tag, value, events file) of every scalar of `tags`.

  Raises:
    FileNotFoundError: the run has no TensorBoard events files.
  """
  paths = sorted(glob.glob(os.path.join(run_dir, "tensorboard",
                                        "events.out.tfevents.*")))
  if not paths:
    raise FileNotFoundError(
        f"No TensorBoard events files in {os.path.join(run_dir, 'tensorboard')}"
        ": the run's history cannot be read.")
  found = []
  for path in paths:
    try:
      for event in tf.compat.v1.train.summary_iterator(path):
        for value in event.summary.value:
          if value.tag in tags:
            found.append((event.wall_time, int(event.step), value.tag,
                          float(tf.make_ndarray(value.tensor)), path))
    except tf.errors.DataLossError:
      pass  # A process killed while writing: its records up to the tear.
  return sorted(found)


def _events(run_dir: str) -> list[tuple[float, int, float, str]]:
  """(wall time, step, validation loss, events file) of every epoch written."""
  return [(wall_time, step, value, path) for wall_time, step, _, value, path
          in _records(run_dir, frozenset([VALIDATION_TAG]))]


def scalars(run_dir: str, tags: Sequence[str]) -> dict[str, dict[int, float]]:
  """{tag: {step: value}} of the run's scalar summaries, as last written.

  A step written by several processes (epochs run again after a resume)
  keeps the latest writing, the one that led to the final weights, as in
  `epochs`. Tags the run never wrote map to {}.
  """
  found: dict[str, dict[int, float]] = {tag: {} for tag in tags}
  for _, step, tag, value, _ in _records(run_dir, frozenset(tags)):
    found[tag][step] = value
  return found


def epochs(run_dir: str) -> list[dict[str, float]]:
  """The run's epochs in order of step, each as last written.

  Returns:
    [{"step", "validation_loss", "seconds"}] per epoch: the epoch's last
    step, its validation loss, and its duration (module docstring).
  """
  events = _events(run_dir)
  latest, previous_in_file = {}, {}
  last_time = {}
  for wall_time, step, loss, path in events:
    latest[step] = (wall_time, loss, path)
    previous_in_file[step] = last_time.get(path)
    last_time[path] = wall_time
  durations = {step: wall_time - previous_in_file[step]
               for step, (wall_time, _, _) in latest.items()
               if previous_in_file[step] is not None}
  typical = statistics.median(durations.values()) if durations else 0.0
  return [{"step": step, "validation_loss": latest[step][1],
           "seconds": durations.get(step, typical)}
          for step in sorted(latest)]


def validation_losses(run_dir: str) -> list[float]:
  """The validation loss of every epoch of the run, in order."""
  return [e["validation_loss"] for e in epochs(run_dir)]


def train_seconds(run_dir: str) -> float:
  """The run's training time over all its processes (module docstring)."""
  return float(sum(e["seconds"] for e in epochs(run_dir)))


def whole(run_dir: str, final_step: int, epochs_run: int
          ) -> dict[str, Any] | None:
  """The run's history if its summaries hold each of its epochs, else None.

  The epochs up to `final_step` (a process that ran further before it was
  stopped, early, does not count) must be at steps s, 2 s, ..., epochs_run
  s for s = final_step / epochs_run: otherwise a file or epoch is missing
  (or the run's epochs had other lengths), and nothing is made up.

  Returns:
    {"validation_loss": [epochs_run], "train_seconds"}, or None (no or
    incomplete summaries).
  """
  if epochs_run < 1 or final_step % epochs_run:
    return None
  try:
    found = [e for e in epochs(run_dir) if e["step"] <= final_step]
  except FileNotFoundError:
    return None
  steps_per_epoch = final_step // epochs_run
  if [e["step"] for e in found] != [steps_per_epoch * (i + 1)
                                    for i in range(epochs_run)]:
    return None
  return {"validation_loss": [e["validation_loss"] for e in found],
          "train_seconds": float(sum(e["seconds"] for e in found))}
