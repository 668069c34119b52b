"""The optimizer a config names (`vib_flows.app.optimizer_builder`).

The learning-rate staircase and Adam's beta_1 of the training recipe of
Alemi et al. 2017, clipping by the global norm of each replica's share,
loss scaling under mixed precision, and the exponential moving average of
the weights (kept by the optimizer, swapped in and back). The reference
average is computed here from its definition: a_1 = w_1,
a_t = d a_{t-1} + (1 - d) w_t over the weights recorded after every step.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from vib_flows import optimizers
from vib_flows.app import epoch_loop
from vib_flows.app import optimizer_builder


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


@pytest.mark.parametrize("num_replicas", [1, 2])
def test_clipnorm_clips_each_replicas_share_by_the_global_norm(num_replicas):
  """SGD at rate 1: g of global norm 5 (3 and 4 per variable), c = 1.

  Each of N replicas gets g / N (`distributed_steps`) and clips at c / N:
  the update is -g c / (N ||g||), the variables' shares of one global norm
  (Keras' per-variable clipnorm would move both by c / N).
  """
  optimizer = optimizer_builder.make_optimizer(
      _optimizer_config(name="sgd", learning_rate=1.0, clipnorm=1.0),
      num_replicas=num_replicas)
  a, b = tf.Variable([0.0, 0.0]), tf.Variable([0.0])
  optimizer.apply([tf.constant([3.0, 0.0]), tf.constant([4.0])], [a, b])
  np.testing.assert_allclose(a.numpy(), [-0.6 / num_replicas, 0.0], rtol=1e-6)
  np.testing.assert_allclose(b.numpy(), [-0.8 / num_replicas], rtol=1e-6)
  unclipped = optimizer_builder.make_optimizer(
      _optimizer_config(name="sgd", learning_rate=1.0, clipnorm=0.0))
  unclipped.apply([tf.constant([3.0, 0.0]), tf.constant([4.0])], [a, b])
  np.testing.assert_allclose(b.numpy(), [-0.8 / num_replicas - 4.0],
                             rtol=1e-6)


def test_mixed_precision_scales_the_loss_of_the_named_optimizer():
  optimizer = optimizer_builder.make_optimizer(
      _optimizer_config(name="adamax"), mixed_precision=True)
  assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
  assert type(optimizer.inner_optimizer) is optimizers.FusedAdamax
  assert float(optimizer.scale_loss(tf.constant(1.0))) > 1.0


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


def test_averaged_weights_swap_in_and_back(tmp_path):
  state = helpers.build_state(tmp_path, **helpers.EMA)
  epoch_loop.train(state, verbose=False)
  weights = helpers.values(state.model.trainable_variables)
  averages = helpers.values(optimizer_builder.moving_averages(state.optimizer))
  assert any(not np.array_equal(w, a) for w, a in zip(weights, averages))
  with optimizer_builder.averaged_weights(state.model, state.optimizer):
    for got, want in zip(helpers.values(state.model.trainable_variables),
                         averages):
      np.testing.assert_array_equal(got, want)
  for got, want in zip(helpers.values(state.model.trainable_variables),
                       weights):
    np.testing.assert_array_equal(got, want)

