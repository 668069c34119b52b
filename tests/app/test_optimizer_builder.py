"""Tests of the training recipe of Alemi et al. 2017 as general features.

The learning-rate staircase, Adam's beta_1, the exponential moving average
of the weights (kept by the optimizer, swapped in for validation, the kept
best weights, evaluation and export, saved in checkpoints), and the
encoder's input centring and scale shift. References are computed here from
the definitions: the average a_1 = w_1, a_t = d a_{t-1} + (1 - d) w_t over
the weights recorded after every step; the encoder from its own kernels.
"""

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from vib_flows import networks
from vib_flows.app import config_checks
from vib_flows.app import epoch_loop
from vib_flows.app import optimizer_builder
from vib_flows.app import run_state


def _optimizer_config(**fields):
  config = helpers.config("test").optimizer
  for key, value in fields.items():
    config[key] = value
  return config


def test_learning_rate_staircase_every_n_epochs():
  optimizer = optimizer_builder.make_optimizer(
      _optimizer_config(learning_rate=0.1, decay_rate=0.5,
                        decay_every_epochs=2), steps_per_epoch=3)
  rates = []
  for step in range(13):
    optimizer.iterations.assign(step)
    rates.append(float(optimizer.learning_rate))
  # Steps 0-5: epochs 1-2; 6-11: epochs 3-4; 12: epoch 5.
  np.testing.assert_allclose(rates, [0.1] * 6 + [0.05] * 6 + [0.025],
                             rtol=1e-6)


def test_constant_rate_and_beta_1_reach_the_optimizer():
  optimizer = optimizer_builder.make_optimizer(
      _optimizer_config(learning_rate=0.01, beta_1=0.5))
  optimizer.iterations.assign(10_000)
  assert float(optimizer.learning_rate) == pytest.approx(0.01)
  assert optimizer.beta_1 == 0.5
  sgd = optimizer_builder.make_optimizer(_optimizer_config(name="sgd"))
  assert not hasattr(sgd, "beta_1")


@pytest.mark.parametrize("jit_compile", [False, True])
def test_moving_average_follows_its_definition(jit_compile):
  decay, steps = 0.8, 6
  optimizer = optimizer_builder.make_optimizer(
      _optimizer_config(learning_rate=0.1), ema_decay=decay)
  rng = np.random.default_rng(0)
  w = tf.Variable(rng.normal(size=(3, 2)).astype(np.float32))
  b = tf.Variable(rng.normal(size=(2,)).astype(np.float32))
  variables = [w, b]
  optimizer.build(variables)
  x = tf.constant(rng.normal(size=(5, 3)).astype(np.float32))

  @tf.function(jit_compile=jit_compile)
  def step():
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(tf.square(x @ w + b - 1.0))
    optimizer.apply(tape.gradient(loss, variables), variables)

  want = None
  for _ in range(steps):
    step()
    current = [v.numpy() for v in variables]
    want = current if want is None else [
        decay * a + (1 - decay) * v for a, v in zip(want, current)]
  got = [a.numpy() for a in optimizer_builder.moving_averages(optimizer)]
  for g, wv, v in zip(got, want, variables):
    np.testing.assert_allclose(g, wv, rtol=1e-5, atol=1e-6)
    assert not np.allclose(g, v.numpy())  # An average, not the weights.


def _ema_state(tmp_path, **fields):
  config = helpers.config("test", **{"train.ema_decay": 0.9,
                                     "train.num_epochs": 1,
                                     "export.enabled": False})
  for key, value in fields.items():
    section, field = key.split(".")
    config[section][field] = value
  return run_state.build_state(config, str(tmp_path))


def _values(variables):
  return [v.numpy().copy() for v in variables]


def test_averaged_weights_swap_in_and_back(tmp_path):
  state = _ema_state(tmp_path)
  epoch_loop.train(state, verbose=False)
  weights = _values(state.model.trainable_variables)
  averages = _values(optimizer_builder.moving_averages(state.optimizer))
  assert any(not np.array_equal(w, a) for w, a in zip(weights, averages))
  with optimizer_builder.averaged_weights(state.model, state.optimizer):
    for got, want in zip(_values(state.model.trainable_variables), averages):
      np.testing.assert_array_equal(got, want)
  for got, want in zip(_values(state.model.trainable_variables), weights):
    np.testing.assert_array_equal(got, want)


def test_best_weights_evaluation_and_checkpoint_hold_the_averages(tmp_path):
  state = _ema_state(tmp_path)
  epoch_loop.train(state, verbose=False)  # One epoch: its weights are the best.
  averages = _values(optimizer_builder.moving_averages(state.optimizer))
  names = [v.path for v in state.model.trainable_variables]
  best = {v.path: b.numpy() for v, b in zip(state.model.weights,
                                            state.best_weights)}
  for name, average in zip(names, averages):
    np.testing.assert_array_equal(best[name], average)
  # The checkpoint restores the averages; the evaluated weights are them.
  restored = run_state.build_state(state.config, str(tmp_path))
  for got, want in zip(
      _values(optimizer_builder.moving_averages(restored.optimizer)), averages):
    np.testing.assert_array_equal(got, want)
  run_state.load_evaluated_weights(restored)
  for got, want in zip(_values(restored.model.trainable_variables),
                       averages):
    np.testing.assert_array_equal(got, want)


def test_without_keep_best_the_last_averaged_weights_are_evaluated(tmp_path):
  state = _ema_state(tmp_path, **{"train.keep_best": False,
                                  "train.num_epochs": 2})
  epoch_loop.train(state, verbose=False)
  averages = _values(optimizer_builder.moving_averages(state.optimizer))
  state.best_weights_step.assign(1)  # Pretend an earlier epoch was best.
  run_state.load_evaluated_weights(state)
  for got, want in zip(_values(state.model.trainable_variables), averages):
    np.testing.assert_array_equal(got, want)
  assert state.evaluated_step == state.step


def _mlp_reference(encoder, x, scale_shift, centered):
  """The encoder's loc and scale from its own kernels, in float64."""
  h = x.reshape(len(x), -1).astype(np.float64)
  if centered:
    h = 2.0 * h - 1.0
  for layer in encoder.hidden_layers:
    kernel, bias = (v.numpy().astype(np.float64) for v in layer.weights)
    h = np.maximum(h @ kernel + bias, 0.0)
  loc_k, loc_b = (v.numpy().astype(np.float64)
                  for v in encoder.loc_head.weights)
  scale_k, scale_b = (v.numpy().astype(np.float64)
                      for v in encoder.scale_head.weights)
  pre = h @ scale_k + scale_b + scale_shift
  return h @ loc_k + loc_b, np.log1p(np.exp(pre)) + encoder.min_scale


@pytest.mark.parametrize("scale_shift, centered", [(0.0, False), (-5.0, True),
                                                   (-5.0, False)])
def test_encoder_centring_and_scale_shift(scale_shift, centered):
  encoder = networks.Encoder(3, (8,), scale_shift=scale_shift,
                             centered_inputs=centered)
  x = np.random.default_rng(1).uniform(size=(4, 2, 3)).astype(np.float32)
  loc, scale, _ = encoder(x)
  want_loc, want_scale = _mlp_reference(encoder, x, scale_shift, centered)
  np.testing.assert_allclose(loc.numpy(), want_loc, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(scale.numpy(), want_scale, rtol=1e-5, atol=1e-7)
  copy = networks.Encoder.from_config(encoder.get_config())
  assert (copy.scale_shift, copy.centered_inputs) == (scale_shift, centered)


def test_builder_passes_the_encoder_options():
  from vib_flows.app import model_builder  # pylint: disable=g-import-not-at-top
  config = helpers.config("test", **{"model.scale_shift": -5.0,
                                     "model.centered_inputs": True})
  model = model_builder.build_model(
      config, {"input_shape": (64,), "num_levels": 17, "num_classes": 10})
  assert model.encoder.scale_shift == -5.0 and model.encoder.centered_inputs


@pytest.mark.parametrize("field, value, words", [
    ("optimizer.beta_1", 1.0, "optimizer.beta_1 must be in [0.0, 1.0)"),
    ("optimizer.decay_rate", 0.0, "optimizer.decay_rate must be in (0, 1]"),
    ("optimizer.decay_rate", float("nan"), "optimizer.decay_rate"),
    ("optimizer.decay_every_epochs", -1, "optimizer.decay_every_epochs"),
    ("train.ema_decay", 1.0, "train.ema_decay must be in [0.0, 1.0)"),
    ("train.ema_decay", float("nan"), "train.ema_decay"),
    ("data.binarization_seed", -3, "data.binarization_seed"),
    ("model.scale_shift", float("inf"), "model.scale_shift must be finite"),
])
def test_bad_recipe_fields_are_refused(field, value, words):
  config = helpers.config("test", **{field: value})
  with pytest.raises(ValueError) as error:
    config_checks.validate(config)
  assert words in str(error.value)


def test_beta_1_only_for_adam_and_adamax():
  config = helpers.config("test", **{"optimizer.name": "sgd",
                                     "optimizer.beta_1": 0.5})
  with pytest.raises(ValueError, match="applies to adam and adamax only"):
    config_checks.validate(config)
  config_checks.validate(helpers.config("test", **{"optimizer.beta_1": 0.5}))


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
  averages = _values(optimizer_builder.moving_averages(state.optimizer))
  assert averages and all(np.all(np.isfinite(a)) for a in averages)
  for got, want in zip(_values(state.model.trainable_variables), averages):
    np.testing.assert_array_equal(got, want)
