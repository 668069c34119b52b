"""Faults lose nothing: kills, NaN losses and weights, interrupted writes."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from vib_flows import train
from vib_flows import workdir as workdir_lib


def _main_command(workdir):
  return [
      sys.executable, "-m", "vib_flows.main", "--config=configs/test.py",
      f"--workdir={workdir}", "--config.train.num_epochs=6",
      "--config.train.checkpoint_every_steps=5",
      "--config.export.enabled=False",
  ]


def _checkpoint_step(workdir):
  path = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
  return int(path.rsplit("-", 1)[1]) if path else 0


@pytest.mark.slow
def test_sigkill_mid_epoch_resumes_and_matches_uninterrupted(tmp_path):
  killed, clean = str(tmp_path / "killed"), str(tmp_path / "clean")
  proc = subprocess.Popen(
      _main_command(killed), cwd=helpers.ROOT, env=helpers.env(),
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
  )
  deadline = time.time() + 300
  try:
    # Wait for a mid-epoch checkpoint (every 5 steps, 10 steps an epoch).
    while _checkpoint_step(killed) < 15 and time.time() < deadline:
      assert proc.poll() is None, "the run ended before it could be killed"
      time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
  finally:
    proc.kill()
    proc.wait()
  step_at_kill = _checkpoint_step(killed)
  assert 15 <= step_at_kill < 60
  assert not os.path.exists(os.path.join(killed, "metrics.json"))
  resumed = subprocess.run(
      _main_command(killed), cwd=helpers.ROOT, env=helpers.env(),
      capture_output=True, text=True, timeout=600,
  )
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  subprocess.run(
      _main_command(clean), cwd=helpers.ROOT, env=helpers.env(), check=True,
      capture_output=True, timeout=600,
  )
  got = helpers.read_json(os.path.join(killed, "metrics.json"))
  want = helpers.read_json(os.path.join(clean, "metrics.json"))
  assert got["step"] == want["step"] == 60
  assert got["steps_this_run"] == 60 - step_at_kill
  # Same data order, same noise per step, restored optimizer state: the
  # resumed run repeats the uninterrupted one, so every variable of the final
  # checkpoint (weights, best weights, Adam moments, counters) is the same up
  # to float rounding.
  got_vars, want_vars = (_checkpoint_values(d) for d in (killed, clean))
  assert got_vars.keys() == want_vars.keys() and len(got_vars) > 10
  for name, value in want_vars.items():
    np.testing.assert_allclose(got_vars[name], value, rtol=1e-5, atol=1e-9,
                               err_msg=name)
  for key in ("test_elbo", "test_log_likelihood", "test_kl"):
    assert got[key] == pytest.approx(want[key], rel=1e-5), key


def _checkpoint_values(workdir):
  """{name: value} of the run's latest checkpoint, but its save counter."""
  path = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
  reader = tf.train.load_checkpoint(path)
  return {name: reader.get_tensor(name)
          for name, _ in tf.train.list_variables(path)
          if not name.startswith(("save_counter", "_CHECKPOINTABLE"))}


def _one_epoch_then_resume(workdir):
  """Trains one epoch, then builds the state that would train a second.

  Returns (path of the epoch's checkpoint, the restored `train.State`).
  """
  config = helpers.config("test", **{"export.enabled": False})
  config.train.num_epochs = 1
  train.train_and_evaluate(config, workdir)
  good = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
  config.train.num_epochs = 2
  return good, train.build_state(config, workdir)


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
  with pytest.raises(train.NonFiniteLossError, match=r"steps 11-20"):
    train.train(state)
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
    train.train(state)
  assert tf.train.latest_checkpoint(
      os.path.join(workdir, "checkpoints")) == good
  fresh = train.build_state(state.config, workdir)  # Restores the previous one.
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
    train.train_and_evaluate(config, str(workdir))
  assert not (workdir / "config.json").exists()


def test_checkpoint_of_other_weight_shapes_is_refused_by_name(tmp_path):
  """A run whose layers held their weights differently (an older layout)."""
  config = helpers.config(train__num_epochs=1, export__enabled=False,
                          eval__num_importance_samples=4)
  train.train_and_evaluate(config, str(tmp_path))
  saved = json.loads((tmp_path / "config.json").read_text())
  saved["flow"]["num_flows"] = config.flow.num_flows + 1
  (tmp_path / "config.json").write_text(json.dumps(saved))
  with pytest.raises(ValueError, match=r"holds model weights of shapes .*"
                     r"Train it again in a new --workdir"):
    train.restore_run(str(tmp_path))
