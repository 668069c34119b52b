"""Size limits before building, and stop signals in every phase of a run.

The limits: `vib_flows.app.limits`' parameter count against the built models'
`count_params()`, the refusals and the warning. The signals: real
`python -m vib_flows.main` processes of configs/test.py, stopped at each
phase (`vib_flows.app.phases`). A phase is held open by a hook (`_HOOK`, run as
`python -c`): after the phase's log line it sleeps in Python (a handler runs
at once) or blocks in a C call that no signal interrupts (as an XLA compile
does), so the signal arrives in that phase whatever the machine's speed.
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

import keras
import pytest

from tests import helpers
from tests import warm_processes
from vib_flows.app import config_checks
from vib_flows.app import export
from vib_flows.app import faults
from vib_flows.app import limits
from vib_flows.app import model_builder
from vib_flows.app import modes
from vib_flows.app import phases
from vib_flows.data import DataInfo

DIGITS = DataInfo("digits", (64,), 10, 17, "levels")
MNIST = DataInfo("mnist", (28, 28, 1), 10, None, "static")
SYNTHETIC = DataInfo("synthetic:banana", (64,), None, None, "static")
# Every shipped config's data, as `data.load` describes it.
_SHIPPED = {"default": DIGITS, "test": DIGITS, "vae_digits": DIGITS,
            "vib_digits": DataInfo("digits", (64,), 10, None, "scale"),
            "vae_mnist": MNIST, "vib_mnist": MNIST, "sylvester_mnist": MNIST,
            "vae_synthetic": SYNTHETIC, "vae_synthetic_true": SYNTHETIC}
_EXAMPLES = {"digits": 1797, "mnist": 70_000, "synthetic:banana": 12_000}


# ------------------------------------------------------------------ limits
@pytest.mark.parametrize("name,overrides,info", [
    ("test", {}, DIGITS),
    ("test", {"flow.name": "sylvester_orthogonal", "flow.amortized": True,
              "flow.num_flows": 5}, DIGITS),
    ("test", {"flow.name": "iaf", "flow.amortized": True,
              "model.prior": "flow"}, DIGITS),
    ("test", {"flow.name": "spline", "flow.amortized": True,
              "model.likelihood": "gaussian", "data.preprocess": "scale"},
     DataInfo("digits", (64,), 10, None, "scale")),
    ("vae_digits", {}, DIGITS),
    ("vib_digits", {}, _SHIPPED["vib_digits"]),
    ("vae_mnist", {}, MNIST),
    ("sylvester_mnist", {}, MNIST),
])
def test_parameter_estimate_matches_the_built_model(name, overrides, info):
  config = helpers.config(name, **overrides)
  config_checks.validate(config)
  keras.backend.clear_session()
  model = model_builder.build_model(config, info)
  found = limits.estimate(config, info.input_shape, info.num_classes,
                          info.num_levels)
  assert found.parameters == pytest.approx(model.count_params(), rel=0.02)
  if config.flow.amortized:  # The context heads are counted.
    assert found.parameter_parts["flow"] > 1000


@pytest.mark.parametrize("name", sorted(_SHIPPED))
def test_shipped_configs_pass_the_limits(name):
  config = helpers.config(name)
  config_checks.validate(config)
  info = _SHIPPED[name]
  found = limits.estimate(config, info.input_shape, info.num_classes,
                          info.num_levels, _EXAMPLES[str(info.name)])
  # They train on a 2-core VM of 23.5 GiB (docs/performance.md), without the
  # warning above half of it.
  assert found.memory_bytes < 10 * 2**30, found
  assert found.flow_layers <= limits.MAX_FLOW_LAYERS


@pytest.mark.parametrize("field,value,named", [
    ("flow.num_flows", 257, "flow.num_flows=257 exceeds the limit of 256"),
    ("model.latent_dim", 5000, "model.latent_dim=5000 exceeds the limit of "
     "4096"),
    ("model.encoder_hidden", (64, 100_000), "model.encoder_hidden (each "
     "width)=100000 exceeds the limit of 16384"),
    ("flow.hidden_units", 20_000, "flow.hidden_units=20000"),
    ("loss.num_samples", 10_000, "loss.num_samples=10000"),
])
def test_sizes_beyond_the_bounds_are_refused_naming_the_field(
    field, value, named):
  config = helpers.config("test", **{field: value})
  with pytest.raises(ValueError, match=re.escape(named)) as error:
    config_checks.validate(config)
  assert "\n" not in str(error.value)


def test_maf_passes_are_refused_beyond_the_graph_limit():
  config = helpers.config("test", **{"flow.name": "maf", "flow.num_flows": 65,
                                     "model.latent_dim": 64})
  with pytest.raises(ValueError, match=r"flow.num_flows=65 .* traces 4160 "
                     r"conditioner passes .* limit of 4096"):
    config_checks.validate(config)
  config.flow.name = "iaf"  # One pass per layer.
  config_checks.validate(config)


class _Splits:
  """What `limits.check` reads of `data.DataSplits`."""

  def __init__(self, info, examples):
    self.info = info
    x = type("X", (), {"shape": (examples,)})()
    self.train = type("Split", (), {"x": x})()
    self.validation = self.test = None


def _small_machine(monkeypatch, gib):
  monkeypatch.setattr(limits, "machine_memory",
                      lambda: (int(gib * 2**30), "the machine's memory"))
  monkeypatch.setattr(limits, "available_memory", lambda: None)


def test_memory_beyond_the_machine_is_refused_naming_the_field(monkeypatch):
  _small_machine(monkeypatch, 4)
  config = helpers.config("test", **{"train.batch_size": 200_000})
  with pytest.raises(faults.ConfigError) as error:
    limits.check(config, _Splits(DIGITS, 1000))
  message = str(error.value)
  assert "\n" not in message
  assert re.search(r"^train\.batch_size=200000: training needs an estimated "
                   r"[\d.]+ GiB \(.*activations [\d.]+ GiB.*\), more than the "
                   r"machine's memory, 4 GiB", message), message
  config = helpers.config("test", **{"model.encoder_hidden": (16384, 16384),
                                     "model.decoder_hidden": (16384,)})
  with pytest.raises(faults.ConfigError, match=r"^model\.encoder_hidden="
                     r"\(16384, 16384\): training needs an estimated [\d.]+ "
                     r"GiB \(2\d{8} parameters; weights [\d.]+ GiB\)"):
    limits.check(config, _Splits(DIGITS, 1000))


def test_large_run_fits_with_one_warning_line(monkeypatch, caplog):
  config = helpers.config("test")
  need = limits.estimate(config, DIGITS.input_shape, 10, 17, 1000)
  _small_machine(monkeypatch, 1.5 * need.memory_bytes / 2**30)
  with caplog.at_level("WARNING"):
    found = limits.check(config, _Splits(DIGITS, 1000))
  assert found.memory_bytes == need.memory_bytes
  warnings = [r.getMessage() for r in caplog.records
              if r.levelname == "WARNING"]
  assert len(warnings) == 1 and "\n" not in warnings[0]
  assert re.match(r"Large run: an estimated [\d.]+ GiB of memory to train",
                  warnings[0]), warnings


def test_many_flow_passes_under_xla_warn_about_the_compile(caplog):
  config = helpers.config("test", **{"flow.name": "maf", "flow.num_flows": 16,
                                     "train.jit_compile": True})
  with caplog.at_level("WARNING"):
    found = limits.check(config, _Splits(DIGITS, 1000))
  assert found.flow_passes == 64
  assert any(r.getMessage().startswith("Large graph: 64 flow passes")
             for r in caplog.records)
  caplog.clear()
  config.train.jit_compile = False
  with caplog.at_level("WARNING"):
    limits.check(config, _Splits(DIGITS, 1000))
  assert not [r for r in caplog.records if "Large graph" in r.getMessage()]


def test_machine_memory_is_the_physical_or_the_cgroup_limit(monkeypatch):
  total, source = limits.machine_memory()
  assert total > 2**30 and source
  monkeypatch.setattr(limits, "_cgroup_limit", lambda: 2**30)
  assert limits.machine_memory() == (2**30, "the cgroup's memory limit")


def test_a_thousand_flows_are_refused_in_seconds(tmp_path):
  workdir = str(tmp_path / "run")
  start = time.monotonic()
  result = helpers.run_main(
      ["--config=configs/test.py", f"--workdir={workdir}",
       "--config.flow.num_flows=1000"], timeout=300, check=False)
  seconds = time.monotonic() - start
  assert result.returncode == faults.EXIT_USAGE, result.stderr[-3000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("vib_flows: flow.num_flows=1000 exceeds the limit "
                         "of 256 flow layers"), last
  assert "Traceback" not in result.stderr
  # Refused by the config checks, before the data and the model.
  assert not _phases_logged(result.stderr)
  assert not os.path.exists(workdir)
  assert seconds < 300  # Once: 23 minutes and 10.9 GB before a SIGKILL.


# ----------------------------------------------------------------- signals
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
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
  last = err.strip().splitlines()[-1]
  assert re.fullmatch(pattern, last), last


def _phases_logged(err):
  return re.findall(r"Phase: ([a-z ]+)$", err, flags=re.M)


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
  assert _phases_logged(err) == [
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
  modes.train_and_evaluate(helpers.config("test", **{
      "train.num_epochs": 1, "export.enabled": False}), workdir)
  code, err, _ = _stop_at(tmp_path, "writing the SavedModel",
                          signals=(signal.SIGINT,), extra=["--mode=export"])
  _assert_one_line(code, err, r"vib_flows: Stopped by SIGINT while exporting: "
                   r"no new version directory was written \(the partial "
                   r"export was removed\)\. Run the same command again to "
                   r"export\.")
  assert _exports(tmp_path) == []
