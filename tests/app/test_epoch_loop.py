"""The epoch loop (`vib_flows.app.epoch_loop`): steps, saves, stops, logs.

Calls of several steps and mid-epoch checkpoints give the run of one step
per call; every epoch's metrics reach TensorBoard; NaN weights stop the run
naming the steps and keep the last good checkpoint; a stop request saves
after the current call, and the resumed run equals the uninterrupted one;
a log written to a pipe (the command line's `trained_run`) has one line per
epoch and no progress bar; while the loop runs, the objects it started with
are left out of Python's full garbage collections, and given back after.
"""

import gc
import os

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from vib_flows.app import epoch_loop
from vib_flows.app import evaluate
from vib_flows.app import faults
from vib_flows.app import run_state


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
  good, state = helpers.one_epoch_then_resume(workdir)
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
  config = helpers.run_config()
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
    assert helpers.checkpoint_step(workdir) == stopped
    epoch_loop.train(run_state.build_state(config, workdir), verbose=False)
    helpers.assert_same_variables(workdir, clean)


def test_steps_per_call_and_checkpoints_do_not_change_the_run(tmp_path):
  """One step per call vs 7 (calls cut at epoch ends and mid-epoch saves)."""
  runs = {}
  for steps_per_call, every_steps in ((1, 0), (7, 4)):
    config = helpers.run_config()
    config.train.num_epochs = 3
    config.train.steps_per_call = steps_per_call
    config.train.checkpoint_every_steps = every_steps
    config.train.checkpoint_every_epochs = 2
    workdir = str(tmp_path / f"spc{steps_per_call}")
    state = run_state.build_state(config, workdir)
    history = epoch_loop.train(state, verbose=False)
    assert [h["step"] for h in history] == [10, 20, 30]
    runs[steps_per_call] = (history, helpers.final_weights(workdir))
    trained = [np.asarray(w) for w in state.model.weights]
  (h1, w1), (h7, w7) = runs[1], runs[7]
  assert w1.keys() == w7.keys() and len(w1) > 4
  for name in w1:
    np.testing.assert_allclose(w7[name], w1[name], rtol=1e-5, atol=1e-6,
                               err_msg=name)
  for a, b in zip(h1, h7):
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
  # Training moved the weights: the comparison is not of two initial states.
  init = run_state.build_state(helpers.config("test"), str(tmp_path / "fresh"))
  moved = [np.max(np.abs(np.asarray(v) - w))
           for v, w in zip(init.model.weights, trained)]
  assert max(moved) > 1e-2


def test_every_epochs_metrics_reach_tensorboard(tmp_path):
  config = helpers.run_config()
  config.train.num_epochs = 2
  state = run_state.build_state(config, str(tmp_path))
  history = epoch_loop.train(state, verbose=False)
  logged = helpers.logged_scalars(str(tmp_path))
  for epoch in history:
    step = epoch["step"]
    for name in ("loss", "kl", "examples_per_second"):
      assert logged[(f"train/{name}", step)] == pytest.approx(
          epoch[name], rel=1e-6), name
    assert logged[("validation/loss", step)] == pytest.approx(
        epoch["validation_loss"], rel=1e-6)
  assert {tag for tag, _ in logged} >= {"validation/kl", "train/beta"}


@pytest.mark.slow
def test_a_log_written_to_a_pipe_has_no_progress_bar(trained_run):
  _, output = trained_run
  assert "epoch 1 step 10 train" in output  # absl's one line per epoch.
  assert "\x1b[" not in output
  assert "━" not in output


def test_the_loop_leaves_the_objects_it_starts_with_out_of_full_collections(
    tmp_path, monkeypatch):
  """Frozen (`gc.freeze`) while the loop runs, given back when it ends."""
  state = helpers.build_state(tmp_path, **{"train.num_epochs": 1})
  frozen_in_loop = []
  validation_metrics = evaluate.validation_metrics

  def counting(*args):
    frozen_in_loop.append(gc.get_freeze_count())
    return validation_metrics(*args)

  monkeypatch.setattr(evaluate, "validation_metrics", counting)
  epoch_loop.train(state, verbose=False)
  # TensorFlow's, Keras's and the model's objects: far more than a thousand.
  assert frozen_in_loop and frozen_in_loop[0] > 1000
  # Given back, so that those that become garbage are collected.
  assert gc.get_freeze_count() == 0
  with pytest.raises(RuntimeError):  # Also when the loop raises.
    with epoch_loop.objects_left_out_of_full_collections():
      assert gc.get_freeze_count() > 1000
      raise RuntimeError("a fault in the loop")
  assert gc.get_freeze_count() == 0


def test_objects_frozen_by_someone_else_stay_frozen():
  gc.freeze()
  try:
    frozen = gc.get_freeze_count()
    with epoch_loop.objects_left_out_of_full_collections():
      pass
    assert gc.get_freeze_count() == frozen
  finally:
    gc.unfreeze()
