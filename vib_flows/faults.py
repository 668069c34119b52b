"""The faults a run stops on cleanly, and the exit status of each.

`python -m vib_flows.main` turns a `RunStoppedError` into one line on stderr and
its `exit_status` (no traceback); library callers get the exception.

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
                                      workdir (`vib_flows.workdir.lock`).
  65      CheckpointsUnreadableError  no checkpoint of the workdir can be
                                      read; move DIR/checkpoints away to
                                      start over.

The values are those of BSD's sysexits.h (EX_TEMPFAIL, EX_IOERR,
EX_CANTCREAT, EX_DATAERR), distinct from a crash (1), a usage error (1) and
the shell's 128 + signal (143 for SIGTERM, 130 for SIGINT, 137 for SIGKILL).
"""

import contextlib
import errno as errno_lib
import os

import tensorflow as tf

EXIT_PREEMPTED = 75
EXIT_WRITE_FAILED = 74
EXIT_WORKDIR_LOCKED = 73
EXIT_CHECKPOINTS_UNREADABLE = 65


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
  try:
    yield
  except (OSError, tf.errors.OpError) as error:
    raise WriteFailedError(
        f"Could not write the {what} to {where}: {reason(error)}. The "
        "previous files are intact; free space or fix the path, then run "
        "the same command again.") from error
