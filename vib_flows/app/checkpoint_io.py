"""Reading and writing the run's checkpoints.

A checkpoint (`tf.train.CheckpointManager` in DIR/checkpoints, the two newest
kept) holds the model, the optimizer (its step counter and moments), the best
validation loss, the epochs without gain and the weights of the best
validation loss so far with their step (`run_state.build_state` makes it;
`state` below is a `run_state.State`).

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

import os
import re

from absl import logging
import tensorflow as tf

from vib_flows.app import distribute
from vib_flows.app import faults
from vib_flows.app import workdir as workdir_lib

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


def checkpoint_dir(workdir):
  """DIR/checkpoints, the chief's checkpoints that every worker restores."""
  return os.path.join(workdir, "checkpoints")


def save_dir(workdir, strategy, is_chief):
  """Chief writes to DIR/checkpoints; other workers to a scratch dir.

  Every worker must take part in a save under MultiWorkerMirroredStrategy;
  the scratch copies of non-chief workers are deleted after each save.
  """
  if is_chief:
    return checkpoint_dir(workdir)
  return os.path.join(workdir, "worker_scratch",
                      f"checkpoints_{distribute.worker_id(strategy)}")


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
  order; a run made with another model (or with a vib_flows version whose
  layers hold their weights differently, for example one planar layer per
  map instead of one layer of K maps) would otherwise fail deep in the
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
