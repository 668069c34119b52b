"""The faults a run stops on cleanly, and the exit status of each.

`python -m vib_flows.main` turns a `RunStoppedError` into one line on stderr,
"vib_flows: <what is wrong>", and its `exit_status` (no traceback unless
--verbose); library callers get the exception.

  status  exception                   meaning; what to do
  75      PreemptedError              SIGTERM/SIGINT: a checkpoint was written
                                      after the current call of steps; run
                                      the same command again to resume.
  74      WriteFailedError            a checkpoint, summary, metrics or
                                      export write failed (disk full,
                                      read-only...); the previous files are
                                      intact; free space or fix the path,
                                      then run again.
  73      WorkdirLockedError          another live process trains in the
                                      workdir (`vib_flows.app.workdir.lock`).
  65      CheckpointsUnreadableError  no checkpoint of the workdir can be
                                      read; move DIR/checkpoints away to
                                      start over.
  65      DataError                   the data of data.name cannot be read or
                                      do not fit the model (ill-formed file,
                                      values outside the likelihood's
                                      support, bad labels); fix the data.
  2       UsageError, ConfigError     a mistake in the command line or the
                                      config (unknown field, impossible
                                      value, unknown flow or data set name,
                                      a workdir of another run); fix it.

The values are those of BSD's sysexits.h (EX_TEMPFAIL, EX_IOERR,
EX_CANTCREAT, EX_DATAERR) and the usage status 2 of command line tools,
distinct from a crash (1: an unexpected exception, with its traceback) and
the shell's 128 + signal (143 for SIGTERM, 130 for SIGINT, 137 for SIGKILL).
`ConfigError` and `DataError` are also `ValueError`s, so library callers
that catch ValueError keep working. docs/errors.md lists the messages.
"""

import contextlib
import errno as errno_lib
import os

# TensorFlow is imported where it is needed (`writing`), so that the command
# line can report a usage mistake before TensorFlow starts.

EXIT_PREEMPTED = 75
EXIT_WRITE_FAILED = 74
EXIT_WORKDIR_LOCKED = 73
EXIT_CHECKPOINTS_UNREADABLE = 65
EXIT_DATA = 65
EXIT_USAGE = 2


class RunStoppedError(Exception):
  """A fault the run stops on with a one-line message and `exit_status`."""

  exit_status = 1


class PreemptedError(RunStoppedError):
  """A stop signal arrived; a checkpoint was written (rerun to resume)."""

  exit_status = EXIT_PREEMPTED


class WriteFailedError(RunStoppedError):
  """A file of the run could not be written; the previous ones are intact."""

  exit_status = EXIT_WRITE_FAILED


class WorkdirLockedError(RunStoppedError):
  """Another live process holds the workdir's lock."""

  exit_status = EXIT_WORKDIR_LOCKED


class CheckpointsUnreadableError(RunStoppedError):
  """The workdir has checkpoints but none of them can be read."""

  exit_status = EXIT_CHECKPOINTS_UNREADABLE


class UsageError(RunStoppedError, ValueError):
  """A mistake in the command line: a flag, a path, the mode for this run."""

  exit_status = EXIT_USAGE


class ConfigError(UsageError):
  """A config field holds an impossible value (`config_checks.validate`)."""


class DataError(RunStoppedError, ValueError):
  """The data of `data.name` cannot be read or do not fit the model."""

  exit_status = EXIT_DATA


@contextlib.contextmanager
def mistakes_are(error_class, kinds=(ValueError,)):
  """Re-raises an exception of `kinds` of the block as `error_class`.

  Marks the checks of one place as user mistakes of one kind (the config
  checks: `ConfigError`; reading the data: `DataError`), with the same
  message; a `RunStoppedError` passes unchanged, and any other exception
  stays what it is (a bug keeps its traceback).

  Args:
    error_class: `ConfigError` or `DataError`.
    kinds: the exception types the block's checks raise (ValueError; the
      config checks also TypeError, for a value of the wrong type).
  """
  try:
    yield
  except RunStoppedError:
    raise
  except kinds as error:
    raise error_class(str(error)) from error


def reason(error):
  """A short reason of an I/O error: "No space left on device (ENOSPC)"."""
  code = getattr(error, "errno", None)
  if isinstance(code, int) and code in errno_lib.errorcode:
    return f"{os.strerror(code)} ({errno_lib.errorcode[code]})"
  text = str(getattr(error, "message", "") or error).strip()
  text = text.splitlines()[0] if text else type(error).__name__
  for code, name in errno_lib.errorcode.items():  # TF's messages end with it.
    if os.strerror(code) in text:
      return f"{os.strerror(code)} ({name})"
  return text[:300]


@contextlib.contextmanager
def writing(what, where):
  """Turns an I/O error of the block into `WriteFailedError(what, where, why)`.

  Args:
    what: what is written ("checkpoint ckpt-20", "metrics.json").
    where: the file or directory it goes to.

  Raises:
    WriteFailedError: the block raised OSError or a TensorFlow OpError.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    yield
  except (OSError, tf.errors.OpError) as error:
    raise WriteFailedError(
        f"Could not write the {what} to {where}: {reason(error)}. The "
        "previous files are intact; free space or fix the path, then run "
        "the same command again.") from error
