"""The distributed training step (`vib_flows.app.distributed_steps`).

The step weights the KL by the model's beta and warm-up and draws the noise
of the model's seed; clipping acts on the global batch's gradient by its
global norm, on one replica or two; the mirrored strategy over two logical
CPUs trains as the default one (tests/scripts/, each in its own process).
"""

import json
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tests import warm_processes
from vib_flows import training_step
from vib_flows.app import distributed_steps
from vib_flows.app import run_state


def test_trainer_step_uses_the_models_beta_warmup_and_seed(tmp_path):
  """The step weights the KL by the model's beta and warm-up, not config's.

  The config says beta = 1 without warm-up and seed 0; the model is changed
  to beta = 40, a warm-up of 4 steps and seed 12 before the step function
  is made. Steps 0 and 1 must give the terms of `per_example_loss` at
  beta_t = 40 * t / 4 with the noise of `step_seed(12, t)`.
  """
  config = helpers.run_config()
  config.loss.beta, config.loss.warmup_steps, config.seed = 1.0, 0, 0
  state = run_state.build_state(config, str(tmp_path))
  model = state.model
  model.beta, model.warmup_steps, model.seed = 40.0, 4, 12
  step_fn = distributed_steps.make_train_step(state)
  batch = {"x": tf.constant(state.splits.train.x[:config.train.batch_size])}
  for step, beta in ((0, 0.0), (1, 10.0)):
    assert int(state.optimizer.iterations.numpy()) == step
    seed = training_step.step_seed(model.seed, tf.constant(step, tf.int64))
    _, terms = model.per_example_loss(batch, beta, seed, training=True)
    expected = {k: float(tf.reduce_sum(v)) for k, v in terms.items()}
    # The config's beta (1, no warm-up) and seed give other numbers.
    config_seed = training_step.step_seed(config.seed,
                                          tf.constant(step, tf.int64))
    _, config_terms = model.per_example_loss(batch, config.loss.beta,
                                             config_seed, training=True)
    config_loss = float(tf.reduce_sum(config_terms["loss"]))
    sums = {k: float(v) for k, v in step_fn(batch).items()}
    count = sums["count"]
    assert count == config.train.batch_size
    assert sums["beta"] / count == pytest.approx(beta)
    for k in model.term_names:
      assert sums[k] == pytest.approx(expected[k], rel=1e-5, abs=1e-3), k
    assert sums["loss"] == pytest.approx(
        -sums["reconstruction"] + beta * sums["kl"], rel=1e-5)
    assert sums["beta"] / count != pytest.approx(config.loss.beta)
    assert sums["loss"] != pytest.approx(config_loss, rel=1e-4)


def test_clipnorm_clips_the_global_batch_gradient_by_its_global_norm():
  # SGD with learning rate 1: the update is -clip(g, c), of global norm c
  # when ||g|| > c. Clipping each variable on its own (Keras' clipnorm) would
  # give norm c for every variable, and clipping each replica's share before
  # the all-reduce up to 2c for two replicas.
  clipnorm = 1e-3
  out = warm_processes.run(
      [sys.executable, "tests/scripts/clipped_update.py", helpers.ROOT,
       str(clipnorm)],
      cwd=helpers.ROOT, env=helpers.env(), capture_output=True, text=True,
      timeout=600,
  )
  assert out.returncode == 0, out.stderr[-4000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["mirrored"]["replicas"] == 2
  for strategy_name in ("default", "mirrored"):
    r = result[strategy_name]
    assert r["update_norm"] == pytest.approx(clipnorm, rel=1e-4), r
    assert r["largest_norm"] < 0.999 * clipnorm, r


@pytest.mark.slow
def test_mirrored_matches_default(tmp_path):
  out = warm_processes.run(
      [sys.executable, "tests/scripts/strategy_trajectories.py", helpers.ROOT],
      cwd=helpers.ROOT, env=helpers.env(), capture_output=True, text=True,
      timeout=600,
  )
  assert out.returncode == 0, out.stderr[-4000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["default"]["replicas"] == 1
  assert result["mirrored"]["replicas"] == 2
  assert result["mirrored"]["steps"] == result["default"]["steps"]
  default, mirrored = (np.array(result[k]["loss"])
                       for k in ("default", "mirrored"))
  # Same data order and global batch; only the posterior noise differs per
  # replica, so the per-epoch losses agree to within Monte Carlo noise (<1%)
  # while training moves them by far more.
  np.testing.assert_allclose(mirrored, default, rtol=1e-2)
  assert default[0] - default[-1] > 10 * np.max(np.abs(mirrored - default))
