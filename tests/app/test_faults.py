"""The faults a run stops on (`vib_flows.app.faults`), and their statuses.

Each fault's exit status is the one the module's table and docs/errors.md
give; an I/O error of a write becomes `WriteFailedError` naming what, where
and why (the errno's name); `mistakes_are` makes a block's checks one kind
of mistake, leaving other faults and bugs as they are.
"""

import errno

import pytest
import tensorflow as tf

from vib_flows.app import faults


def test_each_fault_has_its_documented_exit_status():
  statuses = {faults.PreemptedError: 75, faults.WriteFailedError: 74,
              faults.WorkdirLockedError: 73,
              faults.CheckpointsUnreadableError: 65, faults.DataError: 65,
              faults.UsageError: 2, faults.ConfigError: 2,
              faults.RunStoppedError: 1}
  for error_class, status in statuses.items():
    assert error_class("x").exit_status == status, error_class
  # Library callers that catch ValueError still catch the mistakes.
  assert issubclass(faults.ConfigError, ValueError)
  assert issubclass(faults.DataError, ValueError)
  assert not issubclass(faults.PreemptedError, ValueError)


def test_the_reason_of_an_io_error_names_its_errno():
  assert faults.reason(OSError(errno.ENOSPC, "disk")) == (
      "No space left on device (ENOSPC)")
  # TensorFlow's errors carry the errno's text only.
  error = tf.errors.ResourceExhaustedError(
      None, None, "ckpt-30_temp/part-0.data; No space left on device")
  assert faults.reason(error) == "No space left on device (ENOSPC)"
  assert faults.reason(RuntimeError("first line\nsecond")) == "first line"


def test_a_failed_write_stops_naming_what_where_and_why():
  with pytest.raises(faults.WriteFailedError) as error:
    with faults.writing("checkpoint ckpt-20", "/runs/x/checkpoints"):
      raise PermissionError(errno.EACCES, "Permission denied")
  assert str(error.value).startswith(
      "Could not write the checkpoint ckpt-20 to /runs/x/checkpoints: "
      "Permission denied (EACCES). The previous files are intact")
  assert isinstance(error.value.__cause__, PermissionError)
  with pytest.raises(KeyError):  # Not an I/O error: a bug, left as it is.
    with faults.writing("metrics.json", "/runs/x"):
      raise KeyError("step")


def test_mistakes_are_one_kind_and_other_faults_stay_theirs():
  with pytest.raises(faults.ConfigError, match="^train.num_epochs must"):
    with faults.mistakes_are(faults.ConfigError, (ValueError, TypeError)):
      raise TypeError("train.num_epochs must be an int")
  with pytest.raises(faults.DataError):  # Another kind of mistake.
    with faults.mistakes_are(faults.ConfigError):
      raise faults.DataError("y_train[7] = 50")
  with pytest.raises(ZeroDivisionError):  # A bug keeps its traceback.
    with faults.mistakes_are(faults.ConfigError):
      raise ZeroDivisionError()
