"""The run directory: config.json, metrics.json, atomic writes, reuse rules.

Layout of DIR (`--workdir`):
  config.json         the resolved config of the run
  checkpoints/        latest checkpoints (tf.train.CheckpointManager), each
                      with the weights of the best validation loss so far
  tensorboard/        TensorBoard event files
  metrics.json        test metrics after training or --mode=eval
  lock                held by the process training in DIR (`lock`)
  *.png               reconstructions, samples, information plane

A second run of the same command in the same DIR resumes; a run with another
config is refused unless `train.overwrite` is set, so an earlier run's results
are never overwritten silently.
"""

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import tempfile
import time

from absl import logging
import tensorflow as tf

from vib_flows import faults

LOCK_FILE = "lock"

# Fields that may change between runs in one workdir without making it a
# different run (how and where it runs, not what it learns).
_RUNTIME_FIELDS = ("runtime", "export", "eval")
_RUNTIME_TRAIN_FIELDS = (
    "num_epochs", "overwrite", "checkpoint_every_steps", "steps_per_call",
    "checkpoint_every_epochs", "image_summaries_every_epochs")
def write_json_atomic(path, obj):
  """Writes `obj` as JSON to `path` via a temporary file and a rename.

  Raises:
    faults.WriteFailedError: the file could not be written (the old one, if any,
      is intact and no temporary file is left).
    TypeError: `obj` is not JSON-serializable (nothing is written).
  """
  directory = os.path.dirname(os.path.abspath(path))
  with faults.writing(os.path.basename(path), path):
    tf.io.gfile.makedirs(directory)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
      with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
      os.replace(tmp, path)
    except BaseException:
      if os.path.exists(tmp):
        os.remove(tmp)
      raise


def _holder():
  """This process, as the lock file records it."""
  return {"host": socket.gethostname(), "pid": os.getpid(),
          "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
          "command": " ".join(sys.argv)[:500]}


def _read_holder(fd):
  os.lseek(fd, 0, os.SEEK_SET)
  text = os.read(fd, 4096).decode("utf-8", "replace")
  try:
    holder = json.loads(text)
  except ValueError:
    return {}
  return holder if isinstance(holder, dict) else {}


@contextlib.contextmanager
def lock(workdir):
  """Holds DIR/lock while the block runs: one training process per workdir.

  The lock is an exclusive `flock` on DIR/lock, which names its holder (host,
  pid, start time, command). The kernel releases it when the holder's
  process ends, however it ends (SIGKILL, a crash), so a lock file left by a
  dead process never blocks: its content is only a record, and a new run
  takes it over (and logs whose it was). Process ids are never compared, so
  a reused pid cannot keep a workdir locked. On a file system shared by
  several hosts (NFS), Linux maps `flock` to NFS byte-range locks, which the
  server arbitrates across hosts and releases when a dead host's lease ends.
  Where the file system has no locks (ENOLCK, EOPNOTSUPP) or the workdir is
  not local (gs://...), the run goes on unlocked with a warning.

  Raises:
    faults.WorkdirLockedError: a live process holds the lock (names it).
  """
  path = os.path.join(workdir, LOCK_FILE)
  if "://" in str(workdir):
    logging.warning("%s is not a local path: running without the workdir "
                    "lock; start one training process per workdir.", workdir)
    yield
    return
  with faults.writing("lock file", path):
    os.makedirs(workdir, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _read_holder(fd)
      raise faults.WorkdirLockedError(
          f"Workdir {workdir} is in use by process {holder.get('pid', '?')} "
          f"on host {holder.get('host', '?')} (since "
          f"{holder.get('started', '?')}: {holder.get('command', '?')}); "
          f"{path} is locked. Wait for that run to end or stop it, or use "
          "another --workdir.") from None
    except OSError as error:
      if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP):
        raise
      logging.warning("%s cannot be locked (%s): running without the workdir "
                      "lock.", path, os.strerror(error.errno))
      yield
      return
    previous = _read_holder(fd)
    if previous:
      logging.warning("Took over %s from process %s on host %s, which no "
                      "longer holds it.", path, previous.get("pid"),
                      previous.get("host"))
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(_holder()) + "\n").encode())
    try:
      yield
    finally:
      os.ftruncate(fd, 0)  # Released: the file records nobody.
  finally:
    os.close(fd)  # Closing releases the flock.


def _learning_fields(config_dict):
  result = {k: v for k, v in config_dict.items() if k not in _RUNTIME_FIELDS}
  result["train"] = {
      k: v for k, v in config_dict.get("train", {}).items()
      if k not in _RUNTIME_TRAIN_FIELDS
  }
  return result


def prepare(workdir, config, write=True):
  """Creates `workdir` and writes config.json, refusing to mix runs.

  Args:
    workdir: the run directory.
    config: the resolved ml_collections config.
    write: write config.json (the chief only).

  Returns:
    True when the directory already held this run (training resumes).

  Raises:
    ValueError: the workdir holds a run of a different config and
      `train.overwrite` is not set.
  """
  tf.io.gfile.makedirs(workdir)
  path = os.path.join(workdir, "config.json")
  new = json.loads(config.to_json_best_effort())
  resumed = False
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      old = json.load(f)
    if _learning_fields(old) != _learning_fields(new):
      if not config.train.overwrite:
        changed = sorted(
            k for k in set(old) | set(new)
            if _learning_fields(old).get(k) != _learning_fields(new).get(k)
        )
        raise ValueError(
            f"Workdir {workdir} holds a run with a different config (sections "
            f"{', '.join(changed)} differ). Use a new --workdir, or pass "
            "--config.train.overwrite=True to start over there."
        )
      clear_run(workdir)
    else:
      resumed = True
  if write:
    write_json_atomic(path, new)
  return resumed


def clear_run(workdir):
  """Removes an earlier run's checkpoints and results from `workdir`."""
  for name in ("checkpoints", "tensorboard"):
    path = os.path.join(workdir, name)
    if tf.io.gfile.exists(path):
      tf.io.gfile.rmtree(path)
  for name in ("metrics.json", "config.json"):
    path = os.path.join(workdir, name)
    if tf.io.gfile.exists(path):
      tf.io.gfile.remove(path)
