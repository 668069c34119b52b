"""Checkpoints (`vib_flows.app.checkpoint_io`): saved whole, restored whole.

An interrupted write leaves the previous checkpoint; the newest readable
checkpoint is restored (also from a relative --workdir), and with none
readable the run stops naming the workdir; weights of other shapes are
refused by name; an unwritable or full checkpoint directory stops the run
with one line and keeps the previous files. `two_checkpoints` is one run of
2 epochs with ckpt-10 and ckpt-20, copied and broken by the tests.
"""

import contextlib
import glob
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from vib_flows.app import epoch_loop
from vib_flows.app import faults
from vib_flows.app import modes
from vib_flows.app import run_state


def test_interrupted_checkpoint_write_leaves_the_previous_one(
    tmp_path, monkeypatch):
  workdir = str(tmp_path)
  good, state = helpers.one_epoch_then_resume(workdir)

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


def test_checkpoint_of_other_weight_shapes_is_refused_by_name(tmp_path):
  """A run whose layers held their weights differently (an older layout)."""
  config = helpers.run_config(train__num_epochs=1,
                              eval__num_importance_samples=4)
  modes.train_and_evaluate(config, str(tmp_path))
  saved = json.loads((tmp_path / "config.json").read_text())
  saved["flow"]["num_flows"] = config.flow.num_flows + 1
  (tmp_path / "config.json").write_text(json.dumps(saved))
  with pytest.raises(ValueError, match=r"holds model weights of shapes .*"
                     r"Train it again in a new --workdir"):
    run_state.restore_run(str(tmp_path))


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
  """A run of 2 epochs with checkpoints ckpt-10 and ckpt-20."""
  workdir = str(tmp_path_factory.mktemp("two_checkpoints"))
  config = helpers.run_config()
  config.train.checkpoint_every_epochs = 1
  modes.train_and_evaluate(config, workdir)
  assert helpers.checkpoint_step(workdir) == 20
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
  config = helpers.run_config()
  state = run_state.build_state(config, workdir)
  want = 20 if how == "garbage_state_file" else 10  # ckpt-20 is intact.
  assert state.step == want and state.restored.endswith(f"ckpt-{want}")
  # Every restored variable is the checkpoint's.
  written = state.checkpoint.write(str(tmp_path / "restored" / "ckpt"))
  got = helpers.checkpoint_values(path=written)
  reference = helpers.checkpoint_values(path=os.path.join(
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
  config = helpers.run_config()
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
  line = helpers.last_line(result.stderr)
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
  line = helpers.last_line(result.stderr)
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
  assert helpers.checkpoint_step(str(workdir)) == 20


@pytest.mark.slow
def test_full_disk_stops_with_one_line_and_keeps_the_previous_files(
    tmp_path, two_checkpoints):
  """Checkpoint, then export, on a full tmpfs: one line, status 74."""
  with helpers.tmpfs(tmp_path / "disk", "4m") as disk, helpers.tmpfs(
      tmp_path / "exports", "4m") as exports:
    workdir = disk / "run"
    shutil.copytree(two_checkpoints, workdir)
    published = exports / "vae_digits" / "1"  # A previous export.
    published.mkdir(parents=True)
    (published / "saved_model.pb").write_bytes(b"previous")
    before = _checkpoint_files(workdir)
    export_flags = ["--config.export.enabled=True",
                    f"--config.export.base_dir={exports}"]
    helpers.fill(disk, 300 * 1024)  # Less than a checkpoint (620 kB).
    _assert_write_failed(_rerun(workdir, *export_flags), "checkpoint ckpt-30",
                         workdir / "checkpoints",
                         "No space left on device (ENOSPC)")
    assert _checkpoint_files(workdir) == before  # No ckpt-30*, no ckpt-30_temp.
    assert helpers.checkpoint_step(str(workdir)) == 20
    (disk / "filler").unlink()
    helpers.fill(exports, 200 * 1024)  # Less than an export (520 kB).
    _assert_write_failed(_rerun(workdir, *export_flags), "SavedModel export",
                         exports, "No space left on device (ENOSPC)")
    assert helpers.checkpoint_step(str(workdir)) == 30
    assert helpers.read_json(workdir / "metrics.json")["step"] == 30
    assert sorted(os.listdir(exports / "vae_digits")) == ["1"]  # No temp dir.
    assert os.listdir(published) == ["saved_model.pb"]
    assert (published / "saved_model.pb").read_bytes() == b"previous"
    assert not (workdir / "export.json").exists()


def test_first_checkpoint_write_killed_before_the_state_file_starts_over(
    tmp_path, two_checkpoints, caplog):
  """Only the data file of ckpt-10, no index, no state file: step 0."""
  directory = tmp_path / "run" / "checkpoints"
  directory.mkdir(parents=True)
  for name in os.listdir(os.path.join(two_checkpoints, "checkpoints")):
    if name.startswith("ckpt-10.data"):
      shutil.copy(os.path.join(two_checkpoints, "checkpoints", name),
                  directory)
  config = helpers.run_config()
  state = run_state.build_state(config, str(tmp_path / "run"))
  assert state.step == 0 and not state.restored
  assert "the first write was interrupted" in caplog.text
  # With a state file, the same leftovers are an error, not a new start.
  (directory / "checkpoint").write_text('model_checkpoint_path: "ckpt-10"\n')
  with pytest.raises(faults.CheckpointsUnreadableError,
                     match="No readable checkpoint"):
    run_state.build_state(config, str(tmp_path / "run"))

