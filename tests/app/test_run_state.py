"""The state of a run (`vib_flows.app.run_state`): built, restored, evaluated.

The best step is the step of the kept best weights and is saved; with a
moving average of the weights (`train.ema_decay`) the kept best weights,
the checkpoint and the evaluated weights are the averages, also for a run
of two replicas restored on one device; configs saved before the training
recipe's fields still build.
"""

import ml_collections
import numpy as np
import pytest

from tests import helpers
from vib_flows.app import config_checks
from vib_flows.app import epoch_loop
from vib_flows.app import optimizer_builder
from vib_flows.app import run_state


def test_best_step_is_the_step_of_the_best_weights_and_is_saved(tmp_path):
  config = helpers.run_config()
  state = run_state.build_state(config, str(tmp_path))
  assert state.best_step == state.step == 0  # No best weights yet.
  state.optimizer.iterations.assign(5)
  state.best_val_loss.assign(1.0)
  state.keep_best()
  state.optimizer.iterations.assign(9)
  assert state.best_step == 5 and state.step == 9
  state.manager.save(checkpoint_number=9)
  resumed = run_state.build_state(config, str(tmp_path))
  assert (resumed.best_step, resumed.step) == (5, 9)


def test_best_weights_evaluation_and_checkpoint_hold_the_averages(tmp_path):
  state = helpers.build_state(tmp_path, **helpers.EMA)
  epoch_loop.train(state, verbose=False)  # One epoch: its weights are the best.
  averages = helpers.values(optimizer_builder.moving_averages(state.optimizer))
  names = [v.path for v in state.model.trainable_variables]
  best = {v.path: b.numpy() for v, b in zip(state.model.weights,
                                            state.best_weights)}
  for name, average in zip(names, averages):
    np.testing.assert_array_equal(best[name], average)
  # The checkpoint restores the averages; the evaluated weights are them.
  restored = run_state.build_state(state.config, str(tmp_path))
  for got, want in zip(
      helpers.values(optimizer_builder.moving_averages(restored.optimizer)),
      averages):
    np.testing.assert_array_equal(got, want)
  run_state.load_evaluated_weights(restored)
  for got, want in zip(helpers.values(restored.model.trainable_variables),
                       averages):
    np.testing.assert_array_equal(got, want)


def test_without_keep_best_the_last_averaged_weights_are_evaluated(tmp_path):
  state = helpers.build_state(tmp_path, **{
      **helpers.EMA, "train.keep_best": False, "train.num_epochs": 2})
  epoch_loop.train(state, verbose=False)
  averages = helpers.values(optimizer_builder.moving_averages(state.optimizer))
  state.best_weights_step.assign(1)  # Pretend an earlier epoch was best.
  run_state.load_evaluated_weights(state)
  for got, want in zip(helpers.values(state.model.trainable_variables),
                       averages):
    np.testing.assert_array_equal(got, want)
  assert state.evaluated_step == state.step


def test_configs_saved_before_the_recipe_fields_still_build(tmp_path):
  config = helpers.config("test")
  saved = config.to_dict()
  for section, field in (("optimizer", "beta_1"), ("optimizer", "decay_rate"),
                         ("optimizer", "decay_every_epochs"),
                         ("train", "ema_decay"), ("train", "keep_best"),
                         ("model", "scale_shift"),
                         ("model", "centered_inputs"),
                         ("data", "binarization_seed")):
    del saved[section][field]
  old = ml_collections.ConfigDict(saved)
  config_checks.validate(old)
  state = run_state.build_state(old, str(tmp_path))
  assert not optimizer_builder.moving_averages(state.optimizer)


@pytest.mark.slow
def test_averages_train_and_restore_under_the_mirrored_strategy(tmp_path):
  workdir = str(tmp_path / "run")
  helpers.run_main(
      ["--config=configs/test.py", f"--workdir={workdir}",
       "--config.runtime.virtual_cpu_devices=2",
       "--config.runtime.strategy=mirrored", "--config.train.ema_decay=0.9",
       "--config.train.num_epochs=1", "--config.export.enabled=false"])
  assert "test_elbo" in helpers.read_json(f"{workdir}/metrics.json")
  # The averages written by two replicas restore on one device; one epoch,
  # so the evaluated (best) weights are the averages at its end.
  state = run_state.restore_run(workdir)
  averages = helpers.values(optimizer_builder.moving_averages(state.optimizer))
  assert averages and all(np.all(np.isfinite(a)) for a in averages)
  for got, want in zip(helpers.values(state.model.trainable_variables),
                       averages):
    np.testing.assert_array_equal(got, want)
