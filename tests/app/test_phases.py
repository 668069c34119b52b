"""Stop signals in every phase of a run (`vib_flows.app.phases`).

Real `python -m vib_flows.main` processes of configs/test.py, stopped at
each phase. A phase is held open by a hook (`_HOOK`, run as `python -c`):
after the phase's log line it sleeps in Python (a handler runs at once) or
blocks in a C call that no signal interrupts (as an XLA compile does), so
the signal arrives in that phase whatever the machine's speed.
"""

import glob
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests import helpers
from tests import warm_processes
from vib_flows.app import export
from vib_flows.app import faults
from vib_flows.app import modes
from vib_flows.app import phases

_HOOK = r"""
import ctypes, os, sys, threading, time
from absl import logging
from vib_flows.app import phases

def stall(how):
  if how == "python":  # Python code: a signal's handler runs at once.
    logging.info("Hook: stalling")
    time.sleep(600)
    return
  # A C call that no signal interrupts (POSIX: never EINTR), as XLA compiling.
  class Timespec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]
  libc = ctypes.CDLL(None)
  mutex = ctypes.create_string_buffer(128)
  libc.pthread_mutex_init(mutex, None)
  libc.pthread_mutex_lock(mutex)
  until = Timespec(int(time.time()) + 600, 0)
  # Said once the main thread is surely inside the call (a signal sent
  # before would find it still in Python).
  threading.Timer(1.0, logging.info, ["Hook: stalling"]).start()
  libc.pthread_mutex_timedlock(mutex, ctypes.byref(until))

phase, how = os.environ["HOOK_PHASE"], os.environ["HOOK_HOW"]
if phase == "starting":
  install = phases.install
  def hooked_install():
    install()
    stall(how)
  phases.install = hooked_install
elif phase == "writing the SavedModel":
  import tensorflow as tf
  save = tf.saved_model.save
  def hooked_save(*args, **kwargs):
    save(*args, **kwargs)
    stall(how)
  tf.saved_model.save = hooked_save
else:
  enter = phases.enter
  def hooked_enter(name, mode=None):
    enter(name, mode)
    if name == phase:
      stall(how)
  phases.enter = hooked_enter
from vib_flows import main
main.run()
"""


def _stop_at(tmp_path, phase, how="python", signals=(signal.SIGTERM,),
             extra=(), workdir=None):
  """Runs the main job until `phase` stalls, then sends `signals`.

  Returns:
    (exit status, stderr, seconds from the last signal to the exit).
  """
  workdir = workdir or str(tmp_path / "run")
  command = [sys.executable, "-c", _HOOK, "--config=configs/test.py",
             f"--workdir={workdir}", "--config.train.num_epochs=1",
             f"--config.export.base_dir={tmp_path / 'exports'}", *extra]
  env = helpers.env()
  env.update(HOOK_PHASE=phase, HOOK_HOW=how)
  proc = warm_processes.popen(command, cwd=helpers.ROOT, env=env, text=True,
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
  lines = queue.Queue()
  threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr]
                   + [lines.put(None)], daemon=True).start()
  seen = []
  try:
    while True:
      line = lines.get(timeout=600)
      assert line is not None, f"ended before {phase}: {''.join(seen)[-3000:]}"
      seen.append(line)
      if "Hook: stalling" in line:
        break
    for i, signum in enumerate(signals):
      if i:
        time.sleep(1.0)
      sent = time.monotonic()
      proc.send_signal(signum)
    proc.wait(timeout=300)
    seconds = time.monotonic() - sent
    print(f"{phase} ({how}): the process ended {seconds:.2f} s after the "
          "signal")
  finally:
    proc.kill()
    proc.wait()
  while (line := lines.get(timeout=60)) is not None:
    seen.append(line)
  return proc.returncode, "".join(seen), seconds


def _assert_one_line(code, err, pattern):
  assert code == faults.EXIT_PREEMPTED, err[-3000:]
  assert "Traceback" not in err and "Logging error" not in err, err[-3000:]
  last = helpers.last_line(err)
  assert re.fullmatch(pattern, last), last


def test_stop_while_starting_writes_nothing(tmp_path):
  code, err, seconds = _stop_at(tmp_path, "starting")
  _assert_one_line(code, err, r"vib_flows: Stopped by SIGTERM while starting: "
                   r"nothing was written\. Run the same command again\.")
  assert not os.path.exists(tmp_path / "run")
  assert seconds < 30


def test_stop_while_loading_data_writes_nothing(tmp_path):
  code, err, seconds = _stop_at(tmp_path, phases.LOADING,
                                signals=(signal.SIGINT,))
  _assert_one_line(code, err, r"vib_flows: Stopped by SIGINT while loading "
                   r"the data: nothing was written\. Run the same command "
                   r"again\.")
  assert not os.path.exists(tmp_path / "run")
  assert seconds < 30


def test_stop_while_building_leaves_no_checkpoint(tmp_path):
  code, err, seconds = _stop_at(tmp_path, phases.BUILDING)
  _assert_one_line(code, err, r"vib_flows: Stopped by SIGTERM while building "
                   r"the model: no checkpoint was written, the checkpoints of "
                   r"the workdir are as they were\. Run the same command "
                   r"again\.")
  assert not glob.glob(str(tmp_path / "run" / "checkpoints" / "*"))
  assert seconds < 30


def test_stop_in_a_compile_that_python_cannot_interrupt_ends_after_the_grace(
    tmp_path):
  code, err, seconds = _stop_at(tmp_path, phases.COMPILING, how="c")
  _assert_one_line(code, err, r"vib_flows: Stopped by SIGTERM while compiling "
                   r"the training step \(ended after 5 s: a C\+\+ call that "
                   r"Python cannot interrupt was running\): no checkpoint was "
                   r"written, the checkpoints of the workdir are as they "
                   r"were\. Run the same command again\.")
  assert phases.GRACE_SECONDS - 0.5 < seconds < phases.GRACE_SECONDS + 25
  assert not glob.glob(str(tmp_path / "run" / "checkpoints" / "*"))


@pytest.mark.slow
def test_stop_while_compiling_stops_at_once(tmp_path):
  code, err, seconds = _stop_at(tmp_path, phases.COMPILING)
  _assert_one_line(code, err, r"vib_flows: Stopped by SIGTERM while compiling "
                   r"the training step: no checkpoint was written, the "
                   r"checkpoints of the workdir are as they were\. Run the "
                   r"same command again\.")
  assert not glob.glob(str(tmp_path / "run" / "checkpoints" / "*"))
  assert seconds < 30


@pytest.mark.slow
def test_second_signal_while_training_ends_at_once(tmp_path):
  # The first call of steps is done, the second blocks in C: the first
  # SIGTERM waits for it (to checkpoint after it), the second ends the run.
  code, err, seconds = _stop_at(tmp_path, phases.TRAINING, how="c",
                                signals=(signal.SIGTERM, signal.SIGTERM))
  _assert_one_line(code, err, r"vib_flows: Stopped at once by a second "
                   r"SIGTERM while training: the newest complete checkpoint "
                   r"stays in force \(the one the first signal asked for may "
                   r"be missing\)\. Run the same command again to resume from "
                   r"it\.")
  assert seconds < 15


def test_stop_while_evaluating_keeps_the_checkpoint(tmp_path):
  code, err, seconds = _stop_at(tmp_path, phases.EVALUATING)
  _assert_one_line(code, err, r"vib_flows: Stopped by SIGTERM while "
                   r"evaluating: training is done and its checkpoint written; "
                   r"metrics\.json is written only when the evaluation "
                   r"completes\. Run the same command again to evaluate and "
                   r"export\.")
  run = tmp_path / "run"
  assert os.path.exists(run / "checkpoints" / "ckpt-10.index")
  assert not os.path.exists(run / "metrics.json")
  assert seconds < 30


def _exports(tmp_path):
  return sorted(os.listdir(tmp_path / "exports" / "vae_digits"))


def test_stop_while_exporting_leaves_no_version_directory(tmp_path):
  code, err, seconds = _stop_at(tmp_path, "writing the SavedModel")
  _assert_one_line(code, err, r"vib_flows: Stopped by SIGTERM while "
                   r"exporting: training and evaluation are done; no new "
                   r"version directory was written \(the partial export was "
                   r"removed\)\. Run the same command again to export\.")
  assert helpers.phases_logged(err) == [
      phases.LOADING, phases.BUILDING, phases.COMPILING, phases.TRAINING,
      phases.EVALUATING, phases.EXPORTING]
  assert _exports(tmp_path) == []  # Neither a version nor the temporary one.
  run = tmp_path / "run"
  assert os.path.exists(run / "metrics.json")
  assert not os.path.exists(run / "export.json")
  assert seconds < 30


@pytest.mark.slow
def test_export_stuck_in_c_leaves_only_a_hidden_directory(tmp_path):
  code, err, seconds = _stop_at(tmp_path, "writing the SavedModel", how="c")
  _assert_one_line(code, err, r"vib_flows: Stopped by SIGTERM while exporting "
                   r"\(ended after 5 s: .*\): training and evaluation are "
                   r"done; no new version directory was written \(the partial "
                   r"export is in a hidden \.tmp-export-\* directory, which "
                   r"the next export removes\)\. Run the same command again "
                   r"to export\.")
  left = _exports(tmp_path)
  assert len(left) == 1 and left[0].startswith(".tmp-export-"), left
  model_dir = str(tmp_path / "exports" / "vae_digits")
  assert export.remove_stale_exports(model_dir)  # Its process is gone.
  assert _exports(tmp_path) == []
  assert seconds < phases.GRACE_SECONDS + 25


@pytest.mark.slow
def test_stop_in_export_mode_leaves_no_version_directory(tmp_path):
  workdir = str(tmp_path / "run")
  # The run to export, trained in this process (the signal goes to the
  # export's own process below).
  modes.train_and_evaluate(helpers.run_config(**{"train.num_epochs": 1}),
                           workdir)
  code, err, _ = _stop_at(tmp_path, "writing the SavedModel",
                          signals=(signal.SIGINT,), extra=["--mode=export"])
  _assert_one_line(code, err, r"vib_flows: Stopped by SIGINT while exporting: "
                   r"no new version directory was written \(the partial "
                   r"export was removed\)\. Run the same command again to "
                   r"export\.")
  assert _exports(tmp_path) == []
