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
are never overwritten silently. --mode=eval and --mode=export refuse a config
whose learning fields differ from DIR/config.json (`check_same_run`). A
training start that fails before its first step leaves DIR as it found it
(`undone_unless_started`).
"""

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import sys
import tempfile
import time

from absl import logging
import tensorflow as tf

from vib_flows.app import faults

LOCK_FILE = "lock"

# Fields that may change between runs in one workdir without making it a
# different run (how and where it runs, not what it learns).
_RUNTIME_FIELDS = ("runtime", "export", "eval")
_RUNTIME_TRAIN_FIELDS = (
    "num_epochs", "overwrite", "checkpoint_every_steps", "steps_per_call",
    "checkpoint_every_epochs", "image_summaries_every_epochs")
# Fields a config.json may lack (written by an older vib_flows): the value
# that gives the behaviour of its run.
_ABSENT_MEANS = {("data", "num_classes"): 0}


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


_ABSENT = object()


def _leaves(config_dict, prefix=()):
  """{(section, ..., field): value} of a nested config dict."""
  result = {}
  for key, value in config_dict.items():
    if isinstance(value, dict) and value:
      result.update(_leaves(value, prefix + (key,)))
    else:
      result[prefix + (key,)] = value
  return result


def differences(old, new):
  """[(dotted field, old value, new value)] of the leaves that differ.

  A field missing on one side is `None` there in the result; a field missing
  from `old` that a later version added (`_ABSENT_MEANS`) counts as its
  value of before.
  """
  old_leaves, new_leaves = _leaves(old), _leaves(new)
  found = []
  for key in sorted(set(old_leaves) | set(new_leaves)):
    before = old_leaves.get(key, _ABSENT_MEANS.get(key, _ABSENT))
    after = new_leaves.get(key, _ABSENT)
    if before != after:
      found.append((".".join(key), None if before is _ABSENT else before,
                    None if after is _ABSENT else after))
  return found


def with_absent_defaults(config_dict):
  """A copy of a config.json dict with the fields it predates filled in.

  A config.json written by an older vib_flows lacks the fields added since;
  each gets the value that gives its run's behaviour (`_ABSENT_MEANS`, e.g.
  `data.num_classes = 0`: inferred from the labels), so that the dict
  compares equal to a newer run's of the same protocol.
  """
  filled = json.loads(json.dumps(config_dict))
  for key, value in _ABSENT_MEANS.items():
    section = filled
    for name in key[:-1]:
      section = section.get(name) if isinstance(section, dict) else None
    if isinstance(section, dict) and key[-1] not in section:
      section[key[-1]] = value
  return filled


def learning_differences(old, new):
  """`differences` of the fields that make another run (not runtime ones)."""
  return differences(_learning_fields(old), _learning_fields(new))


def describe(found, limit=4):
  """"loss.beta (1.0 in the run, 0.5 here), ..." of `differences`' result."""
  parts = [f"{field} ({before!r} in the run, {after!r} here)"
           for field, before, after in found[:limit]]
  if len(found) > limit:
    parts.append(f"and {len(found) - limit} more")
  return ", ".join(parts)


def read_config(workdir):
  """The dict of DIR/config.json, or None when there is none."""
  path = os.path.join(workdir, "config.json")
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _config_dict(config):
  return json.loads(config.to_json_best_effort())


def check_model_kind(saved, config, workdir, fix):
  """Refuses a config of another model kind (VAE/VIB) than the saved run's.

  Args:
    saved: the run's config.json dict (None: nothing to compare).
    config: the ConfigDict.
    workdir: the run directory, for the message.
    fix: what to do, the end of the message.

  Raises:
    faults.ConfigError: "DIR holds a VIB run; this config builds a VAE ...".
  """
  old = str((saved or {}).get("model", {}).get("kind", config.model.kind))
  new = str(config.model.kind)
  if old != new:
    raise faults.ConfigError(
        f"{workdir} holds a {old.upper()} run; this config builds a "
        f"{new.upper()} (model.kind={new!r}). {fix}")


def check_same_run(workdir, config, mode):
  """--mode=eval/export: refuses a config that learns another run than DIR's.

  The run's DIR/config.json and `config` must agree on every field but the
  runtime, export and eval sections and the train fields of how long and how
  often (`_RUNTIME_TRAIN_FIELDS`).

  Args:
    workdir: the run directory.
    config: the ConfigDict of this command.
    mode: "eval" or "export", for the message.

  Returns:
    `differences` of the eval section (eval fields may differ; the caller
    records them), [] when DIR has no config.json (a warning says so).

  Raises:
    faults.ConfigError: another model kind, or other learning fields (named).
  """
  saved = read_config(workdir)
  if saved is None:
    logging.warning("%s has no config.json: cannot check that this config "
                    "is the run's.", workdir)
    return []
  fix = (f"Use the config the run was trained with ({workdir}/config.json), "
         "or train this one in another --workdir.")
  check_model_kind(saved, config, workdir, fix)
  new = _config_dict(config)
  found = learning_differences(saved, new)
  if found:
    raise faults.ConfigError(
        f"--mode={mode}: {workdir} was trained with another config: "
        f"{describe(found)}. {fix}")
  return differences({"eval": saved.get("eval", {})},
                     {"eval": new.get("eval", {})})


def write_config(workdir, config):
  """Writes DIR/config.json (atomically)."""
  write_json_atomic(os.path.join(workdir, "config.json"), _config_dict(config))


@contextlib.contextmanager
def undone_unless_started(workdir):
  """Removes what the block created in `workdir` if it fails before started().

  Yields a function `started()`: call it once the run has written what a
  start writes (config.json) and training begins. Should the block raise
  before, a workdir the block created is removed, and in an existing one
  the files and directories the block added; what was there stays (the
  caller writes config.json only after the start succeeded). The block
  takes the workdir's `lock`: when that is refused, another run owns what
  is there, and nothing is removed.
  """
  done = []
  existed = os.path.isdir(workdir)
  before = set(os.listdir(workdir)) if existed else set()
  try:
    yield lambda: done.append(True)
  except faults.WorkdirLockedError:
    raise
  except BaseException:
    if not done and "://" not in str(workdir):
      try:
        if not existed:
          shutil.rmtree(workdir, ignore_errors=True)
        elif os.path.isdir(workdir):
          for name in set(os.listdir(workdir)) - before:
            path = os.path.join(workdir, name)
            if os.path.isdir(path) and not os.path.islink(path):
              shutil.rmtree(path, ignore_errors=True)
            else:
              os.remove(path)
      except OSError as error:  # The original error matters more.
        logging.warning("Could not clean up %s: %s", workdir, error)
    raise


def prepare(workdir, config, write=True):
  """Creates `workdir` and writes config.json, refusing to mix runs.

  Args:
    workdir: the run directory.
    config: the resolved ml_collections config.
    write: write config.json (the chief only).

  Returns:
    True when the directory already held this run (training resumes).

  Raises:
    faults.ConfigError: (a ValueError) the workdir holds a run of a
      different config (another model kind, or the fields named) and
      `train.overwrite` is not set.
  """
  tf.io.gfile.makedirs(workdir)
  new = _config_dict(config)
  resumed = False
  old = read_config(workdir)
  if old is not None:
    found = learning_differences(old, new)
    if found:
      if not config.train.overwrite:
        fix = ("Use a new --workdir, or pass --config.train.overwrite=True to "
               "start over there.")
        check_model_kind(old, config, workdir, fix)
        raise faults.ConfigError(
            f"Workdir {workdir} holds a run with a different config: "
            f"{describe(found)}. {fix}")
      clear_run(workdir)
    else:
      resumed = True
  if write:
    write_config(workdir, config)
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
