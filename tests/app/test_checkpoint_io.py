"""Faults lose nothing: kills, NaN losses and weights, interrupted writes."""

import contextlib
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tests import warm_processes
from vib_flows.app import epoch_loop
from vib_flows.app import faults
from vib_flows.app import modes
from vib_flows.app import run_state
from vib_flows.app import workdir as workdir_lib


def _main_command(workdir, *extra):
  return [
      sys.executable, "-m", "vib_flows.main", "--config=configs/test.py",
      f"--workdir={workdir}", "--config.train.num_epochs=6",
      "--config.train.checkpoint_every_steps=5",
      "--config.export.enabled=False", *extra,
  ]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """The workdir of `_main_command`'s run, never interrupted (60 steps)."""
  clean = str(tmp_path_factory.mktemp("uninterrupted"))
  warm_processes.run(
      _main_command(clean), cwd=helpers.ROOT, env=helpers.env(), check=True,
      capture_output=True, timeout=600,
  )
  return clean


def _checkpoint_step(workdir):
  path = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
  return int(path.rsplit("-", 1)[1]) if path else 0


def _checkpoint_values(workdir=None, path=None):
  """{name: value} of a checkpoint (default: the run's latest).

  All variables but the save counter.
  """
  path = path or tf.train.latest_checkpoint(
      os.path.join(workdir, "checkpoints"))
  reader = tf.train.load_checkpoint(path)
  return {name: reader.get_tensor(name)
          for name, _ in tf.train.list_variables(path)
          if not name.startswith(("save_counter", "_CHECKPOINTABLE"))}


def _one_epoch_then_resume(workdir):
  """Trains one epoch, then builds the state that would train a second.

  Returns (path of the epoch's checkpoint, the restored `run_state.State`).
  """
  config = helpers.config("test", **{"export.enabled": False})
  config.train.num_epochs = 1
  modes.train_and_evaluate(config, workdir)
  good = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
  config.train.num_epochs = 2
  return good, run_state.build_state(config, workdir)


def _assert_only_finite_values(checkpoint_path):
  reader = tf.train.load_checkpoint(checkpoint_path)
  for name, _ in tf.train.list_variables(checkpoint_path):
    value = reader.get_tensor(name)
    if np.issubdtype(np.asarray(value).dtype, np.floating):
      assert np.all(np.isfinite(value)), name


def _relu_that_drops_nan(h):
  """ReLU as some CPU kernels compute it: max(NaN, 0) gives 0, not NaN."""
  return tf.where(tf.math.is_nan(h), tf.zeros_like(h), tf.nn.relu(h))


@pytest.mark.slow
@pytest.mark.parametrize("relu", ["propagates_nan", "drops_nan"])
def test_nan_weights_stop_naming_the_steps_and_keep_the_last_good_checkpoint(
    tmp_path, relu):
  """A NaN kernel stops the run, whether or not the loss turns NaN.

  Where the CPU's ReLU kernel maps NaN to 0, a NaN first-layer kernel leaves
  the loss finite (the encoder just ignores x); the NaN weights must still
  stop the run rather than be checkpointed.
  """
  workdir = str(tmp_path)
  good, state = _one_epoch_then_resume(workdir)
  first_layer = state.model.encoder.hidden_layers[0]
  if relu == "drops_nan":
    first_layer.activation = _relu_that_drops_nan
  first_layer.kernel.assign(np.full(first_layer.kernel.shape, np.nan,
                                    np.float32))
  with pytest.raises(epoch_loop.NonFiniteLossError, match=r"steps 11-20"):
    epoch_loop.train(state)
  assert tf.train.latest_checkpoint(
      os.path.join(workdir, "checkpoints")) == good
  _assert_only_finite_values(good)


def test_interrupted_checkpoint_write_leaves_the_previous_one(
    tmp_path, monkeypatch):
  workdir = str(tmp_path)
  good, state = _one_epoch_then_resume(workdir)

  def crash(*args, **kwargs):
    raise KeyboardInterrupt("killed while writing")

  monkeypatch.setattr(state.checkpoint, "write", crash)
  monkeypatch.setattr(state.checkpoint, "_write", crash, raising=False)
  with pytest.raises(KeyboardInterrupt):
    epoch_loop.train(state)
  assert tf.train.latest_checkpoint(
      os.path.join(workdir, "checkpoints")) == good
  # Restores the previous one.
  fresh = run_state.build_state(state.config, workdir)
  assert fresh.step == 10


def test_atomic_json_write_keeps_the_old_file_on_failure(tmp_path):
  path = tmp_path / "metrics.json"
  workdir_lib.write_json_atomic(str(path), {"a": 1})
  with pytest.raises(TypeError):
    workdir_lib.write_json_atomic(str(path), {"a": object()})
  assert json.loads(path.read_text()) == {"a": 1}
  assert os.listdir(tmp_path) == ["metrics.json"]


def test_bad_data_fails_before_the_workdir_is_written(tmp_path):
  bad = tmp_path / "bad.npz"
  np.savez(bad, x_train=np.full((10, 64), 20.0), y_train=np.zeros(10),
           x_test=np.zeros((5, 64)), y_test=np.zeros(5))
  workdir = tmp_path / "run"
  config = helpers.config("test", **{"data.name": f"npz:{bad}"})
  with pytest.raises(ValueError, match=r"x_train has values outside 0\.\.16"):
    modes.train_and_evaluate(config, str(workdir))
  assert not (workdir / "config.json").exists()


def test_checkpoint_of_other_weight_shapes_is_refused_by_name(tmp_path):
  """A run whose layers held their weights differently (an older layout)."""
  config = helpers.config(train__num_epochs=1, export__enabled=False,
                          eval__num_importance_samples=4)
  modes.train_and_evaluate(config, str(tmp_path))
  saved = json.loads((tmp_path / "config.json").read_text())
  saved["flow"]["num_flows"] = config.flow.num_flows + 1
  (tmp_path / "config.json").write_text(json.dumps(saved))
  with pytest.raises(ValueError, match=r"holds model weights of shapes .*"
                     r"Train it again in a new --workdir"):
    run_state.restore_run(str(tmp_path))


# ------------------------------------------------------- faults of long runs
def _assert_same_variables(got_dir, want_dir):
  """Every variable of the two runs' latest checkpoints (but the counter)."""
  got, want = (_checkpoint_values(d) for d in (got_dir, want_dir))
  assert got.keys() == want.keys() and len(got) > 10
  for name, value in want.items():
    np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-9,
                               err_msg=name)


def _start(command, extra_env=None):
  child = helpers.env()
  child.update(extra_env or {})
  return warm_processes.popen(command, cwd=helpers.ROOT, env=child,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)


def _wait_for_checkpoint(procs, workdir, step, timeout=300):
  """Waits until `workdir` holds a checkpoint of `step` or later."""
  deadline = time.time() + timeout
  while _checkpoint_step(workdir) < step:
    for proc in procs:
      assert proc.poll() is None, (
          f"the run ended before step {step}: {proc.stderr.read()[-3000:]}")
    assert time.time() < deadline, f"no checkpoint of step {step} in time"
    time.sleep(0.02)


def _finish(proc, timeout=300):
  """(exit status, stderr) of `proc`, killed if it outlives `timeout`."""
  try:
    _, err = proc.communicate(timeout=timeout)
  finally:
    proc.kill()
  return proc.returncode, err


def _last_line(stderr):
  return stderr.strip().splitlines()[-1]


def _stopped_step(stderr):
  """The step named by the preemption message on stderr."""
  match = re.search(r"Stopped by SIGTERM after step (\d+); checkpoint "
                    r"\S+ckpt-(\d+) written\. Run the same command again",
                    _last_line(stderr))
  assert match and match[1] == match[2], stderr[-3000:]
  return int(match[1])


def _worker_env(cluster, index):
  return {"TF_CONFIG": json.dumps(
      {"cluster": cluster, "task": {"type": "worker", "index": index}})}


def _run_two_workers(workdir, cluster, signal_worker=None):
  """Runs the main command on two workers; SIGTERM to one after step 15.

  Returns:
    [(exit status, stderr)] of the two workers.
  """
  procs = [_start(_main_command(
      workdir, "--config.runtime.strategy=multi_worker_mirrored",
      "--config.train.steps_per_call=2", "--config.export.enabled=True",
      f"--config.export.base_dir={workdir}_exports"),
                  _worker_env(cluster, index))
           for index in range(2)]
  try:
    if signal_worker is not None:
      _wait_for_checkpoint(procs, workdir, 15)
      procs[signal_worker].send_signal(signal.SIGTERM)
    return [_finish(proc) for proc in procs]
  finally:
    for proc in procs:
      proc.kill()


@pytest.mark.slow
def test_sigterm_to_one_worker_stops_all_at_one_checkpoint_and_resumes(
    tmp_path):
  """Two localhost workers; the non-chief gets the signal; both resume."""
  cluster = {"worker": [f"localhost:{p}" for p in helpers.free_ports(2)]}
  workdir, clean = str(tmp_path / "run"), str(tmp_path / "clean")
  results = _run_two_workers(workdir, cluster, signal_worker=1)
  for code, err in results:
    assert code == faults.EXIT_PREEMPTED, err[-3000:]
  stopped = _stopped_step(results[1][1])
  assert 15 <= stopped < 60 and _checkpoint_step(workdir) == stopped
  assert re.search(rf"Stopped because another worker received a stop "
                   rf"signal after step {stopped};", _last_line(results[0][1]))
  # The README's multi-worker command, resumed: every worker restores the
  # chief's checkpoint, exits 0, and the chief exports.
  for code, err in _run_two_workers(workdir, cluster):
    assert code == 0, err[-3000:]
    assert "Restored" in err and f"ckpt-{stopped}" in err, err[-3000:]
  assert helpers.read_json(os.path.join(workdir, "export.json"))["path"]
  assert not os.listdir(os.path.join(workdir, "worker_scratch"))
  for code, err in _run_two_workers(clean, cluster):
    assert code == 0, err[-3000:]
  metrics = helpers.read_json(os.path.join(workdir, "metrics.json"))
  assert metrics["step"] == 60 and metrics["steps_this_run"] == 60 - stopped
  _assert_same_variables(workdir, clean)


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
  """A run of 2 epochs with checkpoints ckpt-10 and ckpt-20."""
  workdir = str(tmp_path_factory.mktemp("two_checkpoints"))
  config = helpers.config("test", **{"export.enabled": False})
  config.train.checkpoint_every_epochs = 1
  modes.train_and_evaluate(config, workdir)
  assert _checkpoint_step(workdir) == 20
  return workdir


def _break(workdir, number, how):
  directory = os.path.join(workdir, "checkpoints")
  if how == "truncated_data":
    (data,) = glob.glob(os.path.join(directory, f"ckpt-{number}.data-*"))
    with open(data, "r+b") as f:
      f.truncate(os.path.getsize(data) // 2)
  elif how == "missing_index":
    os.remove(os.path.join(directory, f"ckpt-{number}.index"))
  else:
    with open(os.path.join(directory, "checkpoint"), "w") as f:
      f.write("model_checkpoint_path: \x00garbage{{\n")


@pytest.mark.parametrize("how", ["truncated_data", "missing_index",
                                 "garbage_state_file"])
def test_unreadable_newest_checkpoint_restores_the_newest_readable(
    tmp_path, two_checkpoints, how, caplog):
  workdir = str(tmp_path / "run")
  shutil.copytree(two_checkpoints, workdir)
  _break(workdir, 20, how)
  config = helpers.config("test", **{"export.enabled": False})
  state = run_state.build_state(config, workdir)
  want = 20 if how == "garbage_state_file" else 10  # ckpt-20 is intact.
  assert state.step == want and state.restored.endswith(f"ckpt-{want}")
  # Every restored variable is the checkpoint's.
  written = state.checkpoint.write(str(tmp_path / "restored" / "ckpt"))
  got = _checkpoint_values(path=written)
  reference = _checkpoint_values(path=os.path.join(
      two_checkpoints, "checkpoints", f"ckpt-{want}"))
  assert got.keys() == reference.keys() and len(got) > 10
  for name, value in reference.items():
    np.testing.assert_array_equal(got[name], value, err_msg=name)
  if how == "garbage_state_file":
    assert (f"state file {workdir}/checkpoints/checkpoint cannot be parsed"
            in caplog.text)
  else:
    assert ("ckpt-20 cannot be read (ckpt-20.data-00000-of-00001"
            in caplog.text)


def test_relative_workdir_restores_the_newest_checkpoint(
    tmp_path, two_checkpoints, monkeypatch, caplog):
  """`--workdir=runs/x` (relative, as in the README) resumes from the newest.

  TensorFlow's checkpoint state already joins relative paths to the
  checkpoint directory; joining them again named files that do not exist,
  and every resume fell back to the second newest checkpoint.
  """
  shutil.copytree(two_checkpoints, tmp_path / "runs" / "x")
  monkeypatch.chdir(tmp_path)
  config = helpers.config("test", **{"export.enabled": False})
  state = run_state.build_state(config, os.path.join("runs", "x"))
  assert state.step == 20 and state.restored.endswith("ckpt-20")
  assert "cannot be read" not in caplog.text


def _files(directory):
  """{relative path: bytes} of the files under `directory` (not the lock)."""
  return {str(p.relative_to(directory)): p.read_bytes()
          for p in directory.rglob("*") if p.is_file() and p.name != "lock"}


@pytest.mark.slow
def test_no_readable_checkpoint_stops_naming_the_workdir(tmp_path,
                                                        two_checkpoints):
  workdir = tmp_path / "run"
  shutil.copytree(two_checkpoints, workdir)
  _break(str(workdir), 20, "truncated_data")
  _break(str(workdir), 10, "missing_index")
  before = _files(workdir)
  result = helpers.run_main([
      "--config=configs/test.py", f"--workdir={workdir}",
      "--config.export.enabled=False",
      "--config.train.checkpoint_every_epochs=1"], check=False)
  assert result.returncode == faults.EXIT_CHECKPOINTS_UNREADABLE, (
      result.stderr[-3000:])
  assert "Traceback" not in result.stderr
  line = _last_line(result.stderr)
  assert f"No readable checkpoint in {workdir}/checkpoints" in line
  assert "ckpt-20 (ckpt-20.data-00000-of-00001, ckpt-20.index:" in line
  assert "ckpt-10 (ckpt-10.data-00000-of-00001:" in line
  assert f"mv {workdir}/checkpoints {workdir}/checkpoints.broken" in line
  assert _files(workdir) == before  # Nothing was overwritten or started over.


@contextlib.contextmanager
def _read_only(directory):
  """Makes `directory` unwritable: chmod for users, `chattr +i` for root.

  Skips the test where neither stops a write (a root without
  CAP_LINUX_IMMUTABLE, a file system without the attribute).
  """
  mode = os.stat(directory).st_mode
  if os.geteuid() == 0:
    made = subprocess.run(["chattr", "+i", str(directory)],
                          capture_output=True, text=True, check=False)
    undo = ["chattr", "-i", str(directory)]
    if made.returncode:
      pytest.skip(f"cannot make {directory} read-only as root: "
                  f"chattr +i failed ({made.stderr.strip()})")
  else:
    os.chmod(directory, 0o555)
    undo = None
  try:
    probe = os.path.join(directory, "probe")
    try:
      with open(probe, "w"):
        pass
    except OSError:
      pass
    else:
      os.remove(probe)
      pytest.skip(f"{directory} stays writable after chmod/chattr")
    yield
  finally:
    if undo:
      subprocess.run(undo, check=True)
    os.chmod(directory, mode)


def _rerun(workdir, *extra):
  return helpers.run_main([
      "--config=configs/test.py", f"--workdir={workdir}",
      "--config.train.checkpoint_every_epochs=1",
      "--config.train.num_epochs=3", *extra], check=False)


def _assert_write_failed(result, what, where, why):
  assert result.returncode == faults.EXIT_WRITE_FAILED, result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  line = _last_line(result.stderr)
  assert line.startswith(f"vib_flows: Could not write the {what} to {where}: "
                         f"{why}"), line


def _checkpoint_files(workdir):
  """{name: bytes} in DIR/checkpoints (None for a directory)."""
  return {p.name: p.read_bytes() if p.is_file() else None
          for p in (workdir / "checkpoints").iterdir()}


def test_unwritable_checkpoint_directory_stops_with_one_line(
    tmp_path, two_checkpoints):
  workdir = tmp_path / "run"
  shutil.copytree(two_checkpoints, workdir)
  before = _checkpoint_files(workdir)
  with _read_only(workdir / "checkpoints"):
    result = _rerun(workdir, "--config.export.enabled=False")
  _assert_write_failed(
      result, "checkpoint ckpt-30", workdir / "checkpoints",
      "Operation not permitted (EPERM)" if os.geteuid() == 0
      else "Permission denied (EACCES)")
  assert _checkpoint_files(workdir) == before
  assert _checkpoint_step(str(workdir)) == 20


@contextlib.contextmanager
def _tmpfs(path, size):
  """A tmpfs of `size` mounted at `path` (skips where mounting is refused)."""
  path.mkdir()
  mounted = subprocess.run(
      ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
      capture_output=True, text=True, check=False)
  if mounted.returncode:
    pytest.skip(f"cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): "
                f"{mounted.stderr.strip()}")
  try:
    yield path
  finally:
    subprocess.run(["umount", "-l", str(path)], check=True)


def _fill(directory, leave):
  """Fills the file system of `directory` up to `leave` free bytes."""
  stat = os.statvfs(directory)
  with open(directory / "filler", "wb") as f:
    f.write(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))


@pytest.mark.slow
def test_full_disk_stops_with_one_line_and_keeps_the_previous_files(
    tmp_path, two_checkpoints):
  """Checkpoint, then export, on a full tmpfs: one line, status 74."""
  with _tmpfs(tmp_path / "disk", "4m") as disk, _tmpfs(
      tmp_path / "exports", "4m") as exports:
    workdir = disk / "run"
    shutil.copytree(two_checkpoints, workdir)
    published = exports / "vae_digits" / "1"  # A previous export.
    published.mkdir(parents=True)
    (published / "saved_model.pb").write_bytes(b"previous")
    before = _checkpoint_files(workdir)
    export_flags = ["--config.export.enabled=True",
                    f"--config.export.base_dir={exports}"]
    _fill(disk, 300 * 1024)  # Less than a checkpoint (620 kB).
    _assert_write_failed(_rerun(workdir, *export_flags), "checkpoint ckpt-30",
                         workdir / "checkpoints",
                         "No space left on device (ENOSPC)")
    assert _checkpoint_files(workdir) == before  # No ckpt-30*, no ckpt-30_temp.
    assert _checkpoint_step(str(workdir)) == 20
    (disk / "filler").unlink()
    _fill(exports, 200 * 1024)  # Less than an export (520 kB).
    _assert_write_failed(_rerun(workdir, *export_flags), "SavedModel export",
                         exports, "No space left on device (ENOSPC)")
    assert _checkpoint_step(str(workdir)) == 30
    assert helpers.read_json(workdir / "metrics.json")["step"] == 30
    assert sorted(os.listdir(exports / "vae_digits")) == ["1"]  # No temp dir.
    assert os.listdir(published) == ["saved_model.pb"]
    assert (published / "saved_model.pb").read_bytes() == b"previous"
    assert not (workdir / "export.json").exists()


def test_workdir_lock_refuses_a_second_holder_and_ignores_a_dead_ones(
    tmp_path, caplog):
  workdir = str(tmp_path)
  lock_path = os.path.join(workdir, workdir_lib.LOCK_FILE)
  host = socket.gethostname()
  with workdir_lib.lock(workdir):
    holder = helpers.read_json(lock_path)
    assert (holder["host"], holder["pid"]) == (host, os.getpid())
    # A second open of the file is a second holder, even in this process.
    with pytest.raises(faults.WorkdirLockedError,
                       match=rf"in use by process {os.getpid()} on host "
                       rf"{re.escape(host)} .*{re.escape(lock_path)} is "
                       "locked"):
      with workdir_lib.lock(workdir):
        pass
  # A record of a process that holds nothing: the pid is alive (pid reuse:
  # pid 1 runs) and on this host, but the record alone does not lock.
  with open(lock_path, "w") as f:
    json.dump({"host": host, "pid": 1, "started": "then"}, f)
  with workdir_lib.lock(workdir):
    assert helpers.read_json(lock_path)["pid"] == os.getpid()
  assert f"Took over {lock_path} from process 1 on host {host}" in caplog.text


@pytest.mark.slow
def test_second_process_on_a_workdir_is_refused_until_the_first_dies(
    tmp_path):
  workdir = str(tmp_path / "run")
  lock_path = os.path.join(workdir, workdir_lib.LOCK_FILE)
  first = _start(_main_command(workdir, "--config.train.num_epochs=500"))
  try:
    deadline = time.time() + 300
    while not (os.path.exists(lock_path) and os.path.getsize(lock_path)):
      assert first.poll() is None, first.stderr.read()[-3000:]
      assert time.time() < deadline
      time.sleep(0.05)
    second = warm_processes.run(
        _main_command(workdir, "--config.train.num_epochs=500"),
        cwd=helpers.ROOT, env=helpers.env(), capture_output=True, text=True,
        timeout=300)
    assert first.poll() is None, "the first run ended too early"
    assert second.returncode == faults.EXIT_WORKDIR_LOCKED, (
        second.stderr[-3000:])
    assert "Traceback" not in second.stderr
    assert re.search(
        rf"Workdir {re.escape(workdir)} is in use by process {first.pid} on "
        rf"host {re.escape(socket.gethostname())} ",
        _last_line(second.stderr)), second.stderr[-3000:]
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()
  assert helpers.read_json(lock_path)["pid"] == first.pid  # Left behind.
  third = warm_processes.run(
      _main_command(workdir, "--config.train.num_epochs=1"), cwd=helpers.ROOT,
      env=helpers.env(), capture_output=True, text=True, timeout=600)
  assert third.returncode == 0, third.stderr[-3000:]
  assert f"from process {first.pid} on host" in third.stderr


@pytest.mark.slow
def test_soak_run_killed_and_resumed_four_times_equals_uninterrupted(
    tmp_path, uninterrupted):
  """SIGTERM and SIGKILL in turn, each a seeded random number of steps on.

  SIGTERM: status 75, no traceback, a checkpoint at the step it names.
  SIGKILL (mid-epoch: an epoch is 10 steps, checkpoints every 5): no
  metrics.json, the last checkpoint kept. The final run resumes from there
  and ends with every variable of the checkpoint (weights, best weights, Adam
  moments, counters) and the test metrics of the uninterrupted run, up to
  float rounding: same data order, same noise per step, restored optimizer
  state.
  """
  workdir = str(tmp_path / "run")
  rng = np.random.default_rng(20261204)
  last = 0
  for sig in (signal.SIGTERM, signal.SIGKILL) * 2:
    target = last + int(rng.integers(2, 9))  # Checkpoints every 5 steps.
    proc = _start(_main_command(workdir, "--config.train.steps_per_call=2"))
    _wait_for_checkpoint([proc], workdir, target)
    proc.send_signal(sig)
    code, err = _finish(proc)
    if sig == signal.SIGTERM:
      assert code == faults.EXIT_PREEMPTED, err[-3000:]
      assert "Traceback" not in err
      last = _stopped_step(err)
      assert _checkpoint_step(workdir) == last
    else:
      assert code == -signal.SIGKILL
      last = _checkpoint_step(workdir)
    assert target <= last < 60
    assert not os.path.exists(os.path.join(workdir, "metrics.json"))
  final = warm_processes.run(
      _main_command(workdir), cwd=helpers.ROOT, env=helpers.env(),
      capture_output=True, text=True, timeout=600)
  assert final.returncode == 0, final.stderr[-3000:]
  got = helpers.read_json(os.path.join(workdir, "metrics.json"))
  want = helpers.read_json(os.path.join(uninterrupted, "metrics.json"))
  assert got["step"] == want["step"] == 60
  assert got["steps_this_run"] == 60 - last
  _assert_same_variables(workdir, uninterrupted)
  for key in ("test_elbo", "test_log_likelihood", "test_kl"):
    assert got[key] == pytest.approx(want[key], rel=1e-5), key


class _StopOnceAt(epoch_loop.StopRequest):
  """A stop request that is set once the run reaches `step`."""

  def __init__(self, state, step):
    super().__init__()
    self.signal_name = "SIGTERM"
    self._state, self._step = state, step

  def is_set(self):
    return self._state.step >= self._step


def test_stop_request_saves_after_the_call_and_resumes_equal(tmp_path):
  """A stop mid-epoch, and one in the call that ends the (last) epoch."""
  config = helpers.config("test", **{"export.enabled": False})
  config.train.num_epochs = 1
  config.train.steps_per_call = 3  # Calls end at steps 3, 6, 9 and 10.
  clean = str(tmp_path / "clean")
  epoch_loop.train(run_state.build_state(config, clean), verbose=False)
  # From step 7 on: the call of steps 7-9 ends, then the stop. From step 10:
  # the call ended the epoch, which is validated and saved before the stop.
  for stop_from, stopped in ((7, 9), (10, 10)):
    workdir = str(tmp_path / f"stopped_{stop_from}")
    state = run_state.build_state(config, workdir)
    with pytest.raises(faults.PreemptedError,
                       match=rf"Stopped by SIGTERM after step {stopped}; "
                       rf"checkpoint .*ckpt-{stopped} written"):
      epoch_loop.train(state, verbose=False, stop=_StopOnceAt(state, stop_from))
    assert _checkpoint_step(workdir) == stopped
    epoch_loop.train(run_state.build_state(config, workdir), verbose=False)
    _assert_same_variables(workdir, clean)


def test_first_checkpoint_write_killed_before_the_state_file_starts_over(
    tmp_path, two_checkpoints, caplog):
  """Only the data file of ckpt-10, no index, no state file: step 0."""
  directory = tmp_path / "run" / "checkpoints"
  directory.mkdir(parents=True)
  for name in os.listdir(os.path.join(two_checkpoints, "checkpoints")):
    if name.startswith("ckpt-10.data"):
      shutil.copy(os.path.join(two_checkpoints, "checkpoints", name),
                  directory)
  config = helpers.config("test", **{"export.enabled": False})
  state = run_state.build_state(config, str(tmp_path / "run"))
  assert state.step == 0 and not state.restored
  assert "the first write was interrupted" in caplog.text
  # With a state file, the same leftovers are an error, not a new start.
  (directory / "checkpoint").write_text('model_checkpoint_path: "ckpt-10"\n')
  with pytest.raises(faults.CheckpointsUnreadableError,
                     match="No readable checkpoint"):
    run_state.build_state(config, str(tmp_path / "run"))


def test_full_summary_disk_stops_with_write_failed(tmp_path):
  """DIR/tensorboard on its own full tmpfs: the summary file cannot start."""
  workdir = tmp_path / "run"
  workdir.mkdir()
  config = helpers.config("test", **{"export.enabled": False})
  config.train.num_epochs = 1
  with _tmpfs(workdir / "tensorboard", "64k") as board:
    _fill(board, 0)
    state = run_state.build_state(config, str(workdir))
    with pytest.raises(faults.WriteFailedError,
                       match=rf"Could not write the TensorBoard summaries to "
                       rf"{re.escape(str(board))}: No space left on device "
                       r"\(ENOSPC\)"):
      epoch_loop.train(state, verbose=False)
  assert _checkpoint_step(str(workdir)) == 0  # Stopped before any step.
