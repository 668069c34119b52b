"""The phases of a command-line run, and how SIGTERM and SIGINT end each.

`python -m vib_flows.main` calls `install()` first. From then on a stop
signal (SIGTERM, or SIGINT: Ctrl-C) ends the run promptly in every phase,
with one line on stderr naming the phase and what is left, and exit status
75 (`faults.EXIT_PREEMPTED`: run the same command again):

  phase (log line "Phase: ...")  on the first signal
  starting, loading data,        the run stops at once (the signal's handler
  building the model,            raises `Stop`, which the run's function
  compiling                      turns into `StoppedError`, after the
                                 cleanups of the code it crosses; a start
                                 leaves no checkpoint). Compiling is the
                                 training step's first call (its trace, its
                                 XLA compile, its first steps).
  training                       the trainer finishes its current call of
                                 steps, writes a checkpoint and stops
                                 (`epoch_loop.stop_signals`,
                                 `PreemptedError`).
  evaluating                     stops at once; the checkpoint is written,
                                 metrics.json only when the evaluation ends.
  exporting                      stops at once; the partial export, in a
                                 hidden temporary directory, is removed: no
                                 version directory is ever half written.

Python runs a signal's handler only between two bytecodes of the main
thread, so not during a long C++ call (XLA compiling the step, a TensorFlow
op). A watchdog thread learns of every signal at once (`signal.set_wakeup_fd`)
and, when the process has not ended `GRACE_SECONDS` after the first signal
(outside training), writes the line itself and ends the process with
`os._exit(75)`. A second signal ends the process at once in every phase,
training included (the newest complete checkpoint stays in force). Either
way nothing is left half written that a rerun would read: checkpoints,
metrics.json and export versions are written under temporary names and
renamed when complete (a hard stop while exporting leaves the hidden
`.tmp-export-*` directory, which the next export removes).

Library callers that do not call `install()` get the log lines and, while
`epoch_loop.train` runs, `epoch_loop.stop_signals` (a signal while the first
call of steps compiles raises `Stop`, a BaseException as KeyboardInterrupt
is, which `modes.train_and_evaluate` turns into `StoppedError`).
"""

import functools
import os
import select
import signal
import threading
import time

from absl import logging

from vib_flows.app import faults

STARTING = "starting"
LOADING = "loading data"
BUILDING = "building the model"
COMPILING = "compiling"
TRAINING = "training"
EVALUATING = "evaluating"
EXPORTING = "exporting"
PHASES = (STARTING, LOADING, BUILDING, COMPILING, TRAINING, EVALUATING,
          EXPORTING)
_DONE = "done"  # The run's function returned or raised: the process ends.

# How long the process may take to end by itself after a stop signal before
# the watchdog ends it (a C++ call such as an XLA compile cannot be
# interrupted from Python).
GRACE_SECONDS = 5.0
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_DESCRIPTIONS = {
    STARTING: "while starting",
    LOADING: "while loading the data",
    BUILDING: "while building the model",
    COMPILING: "while compiling the training step",
    TRAINING: "after training",
    EVALUATING: "while evaluating",
    EXPORTING: "while exporting",
}


class Stop(BaseException):  # noqa: N818 (not an error: as KeyboardInterrupt)
  """Raised by a stop signal's handler; `stoppable` makes it `StoppedError`.

  A BaseException, as KeyboardInterrupt: the `except Exception` of library
  code (logging's, for one) does not swallow it, and the cleanups of
  `except BaseException` and `finally` run.

  Attributes:
    phase: the phase it stopped in (one of `PHASES`).
  """

  def __init__(self, message, phase):
    super().__init__(message)
    self.phase = phase


class StoppedError(faults.PreemptedError):
  """A stop signal ended the run outside training (exit status 75).

  Attributes:
    phase: the phase it stopped in (one of `PHASES`).
  """

  def __init__(self, message, phase):
    super().__init__(message)
    self.phase = phase


class _State:
  """The process's phase and what the signal handlers have done."""

  def __init__(self):
    self.phase = STARTING
    self.mode = "train"
    self.installed = False
    self.raised = False  # A handler raised Stop in this run.
    self.signals = 0  # Stop signals the watchdog has seen.
    self.lock = threading.Lock()
    self.exiting = threading.Lock()  # Taken by the one thread that exits.


_state = _State()


def current():
  """The phase the run is in (one of `PHASES`)."""
  return _state.phase


def enter(phase, mode=None):
  """Logs "Phase: <phase>" and makes it the phase a stop signal reports.

  Args:
    phase: one of `PHASES`.
    mode: "train", "eval" or "export" (the command line's --mode), when it
      starts; it words the message of a stop.
  """
  if phase not in PHASES:
    raise ValueError(f"Unknown phase {phase!r}; valid: {', '.join(PHASES)}.")
  with _state.lock:
    _state.phase = phase
    if mode is not None:  # A run starts.
      _state.mode = mode
      _state.raised = False
  logging.info("Phase: %s", phase)


def message(signal_name, phase=None, how="first"):
  """The one line (without "vib_flows: ") of a stop in `phase`.

  Args:
    signal_name: "SIGTERM" or "SIGINT".
    phase: one of `PHASES` (default: the current phase).
    how: "first" (the run stops by itself), "late" (the watchdog ended it
      after `GRACE_SECONDS`) or "second" (a second signal ended it at once).
  """
  phase = phase or _state.phase
  mode = _state.mode
  by = f"by {signal_name}"
  if how == "second":
    by = f"at once by a second {signal_name}"
  where = _DESCRIPTIONS[phase]
  again = "Run the same command again"
  if phase in (STARTING, LOADING):
    state = "nothing was written"
  elif phase in (BUILDING, COMPILING):
    state = ("no checkpoint was written, the checkpoints of the workdir are "
             "as they were")
  elif phase == TRAINING and how == "second":
    where = "while training"
    state = ("the newest complete checkpoint stays in force (the one the "
             "first signal asked for may be missing)")
    again += " to resume from it"
  elif phase in (TRAINING, EVALUATING):
    state = ("metrics.json is written only when the evaluation completes"
             if mode != "train" else
             "training is done and its checkpoint written; metrics.json is "
             "written only when the evaluation completes")
    again += " to evaluate" + (" and export" if mode == "train" else "")
  else:
    state = ("no new version directory was written (the partial export "
             + ("is in a hidden .tmp-export-* directory, which the next "
                "export removes)" if how != "first" else "was removed)"))
    if mode == "train":
      state = "training and evaluation are done; " + state
    again += " to export"
  if how == "late":
    where += (f" (ended after {GRACE_SECONDS:g} s: a C++ call that Python "
              "cannot interrupt was running)")
  return f"Stopped {by} {where}: {state}. {again}."


def stopped(signal_name, phase=None):
  """The `Stop` of a stop in `phase` (default: the current one)."""
  phase = phase or _state.phase
  return Stop(message(signal_name, phase), phase)


def stoppable(function):
  """Decorates a run's function: a `Stop` in it leaves as `StoppedError`.

  When the function returns or raises, the run is done: a signal then is
  ignored by the handler (the process is ending).
  """

  @functools.wraps(function)
  def wrapper(*args, **kwargs):
    try:
      return function(*args, **kwargs)
    except Stop as stop:
      raise StoppedError(str(stop), stop.phase) from None
    finally:
      with _state.lock:
        _state.phase = _DONE

  return wrapper


def _exit_now(line):
  """Writes `line` (if any) to stderr and ends the process: status 75.

  Only one thread gets here; os.write takes no Python lock that the main
  thread could hold.
  """
  if not _state.exiting.acquire(blocking=False):
    return
  if line:
    try:
      os.write(2, f"vib_flows: {line}\n".encode("utf-8", "replace"))
    except OSError:
      pass
  os._exit(faults.EXIT_PREEMPTED)  # pylint: disable=protected-access


def stop_now(signal_name):
  """Raises the current phase's `Stop`, once (from a signal's handler).

  A signal that comes while the first one's error unwinds does not raise
  again (with `install()`, the watchdog ends the process at once).

  Raises:
    Stop: the first time.
  """
  if _state.raised:
    return
  _state.raised = True
  logging.warning("%s received %s: stopping.", signal_name,
                  _DESCRIPTIONS[_state.phase])
  raise stopped(signal_name)


def _handler(signum, frame):
  """The stop signals' handler outside training (main thread)."""
  del frame
  name = signal.Signals(signum).name
  if _state.phase == _DONE:  # The process is ending.
    return
  if _state.phase == STARTING and not _state.raised:
    # Before the run's code is entered (imports, flags): nothing to undo, and
    # no handler of RunStoppedError around it yet.
    _exit_now(message(name, STARTING))
  stop_now(name)


def _watch(read_fd):
  """The watchdog thread: ends the process when it does not end by itself."""
  deadline: float | None = None
  first, first_phase = "", STARTING
  while True:
    timeout = None
    if deadline is not None:
      timeout = max(0.0, deadline - time.monotonic())
    try:
      ready, _, _ = select.select([read_fd], [], [], timeout)
    except InterruptedError:
      continue
    if not ready:  # The grace period is over.
      if not threading.main_thread().is_alive() or _state.phase == _DONE:
        _exit_now("")  # Ending: its line (if any) is written.
      _exit_now(message(first, first_phase, how="late"))
      return
    try:
      data = os.read(read_fd, 512)
    except (BlockingIOError, InterruptedError):
      continue
    for signum in data:
      if signum not in _STOP_SIGNALS:
        continue
      name = signal.Signals(signum).name
      with _state.lock:
        _state.signals += 1
        count, phase = _state.signals, _state.phase
      if count > 1:
        _exit_now("" if phase == _DONE else message(name, phase, how="second"))
      first, first_phase = name, phase
      if phase != TRAINING:  # The trainer stops after its call by itself.
        deadline = time.monotonic() + GRACE_SECONDS


def second_signal(signal_name):
  """A second stop signal while the trainer finishes its call.

  With `install()`, the watchdog ends the process (it sees every signal,
  even during a C++ call); without it, SIGINT raises KeyboardInterrupt, as
  Python does.
  """
  if _state.installed:
    return
  if signal_name == "SIGINT":
    raise KeyboardInterrupt


def install():
  """Stop signals end the run promptly in every phase (module docstring).

  Call it once, first thing, from the main thread of the command line; it
  does nothing elsewhere or when called again.
  """
  if _state.installed or (
      threading.current_thread() is not threading.main_thread()):
    return
  read_fd, write_fd = os.pipe()
  os.set_blocking(write_fd, False)  # set_wakeup_fd needs it.
  for fd in (read_fd, write_fd):
    os.set_inheritable(fd, False)
  signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
  for signum in _STOP_SIGNALS:
    signal.signal(signum, _handler)
  threading.Thread(target=_watch, args=(read_fd,), name="vib_flows-stop",
                   daemon=True).start()
  _state.installed = True
