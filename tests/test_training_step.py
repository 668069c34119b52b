"""The loss one replica differentiates, and the noise seed of each step.

`vib_flows.training_step`, shared by Keras' `fit` and the command line's
trainer: the seed of step t is fold_in(fold_in([seed, 0], t), replica), and
the loss is this replica's share of the global batch's mean loss, scaled by
the optimizer's loss scale.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from vib_flows import training_step


def _fold_in(seed, value):
  return tf.random.experimental.stateless_fold_in(seed, value)


def test_the_seed_of_a_step_folds_in_the_step_then_the_replica():
  seeds = {}
  for seed, step in ((0, 0), (12, 3), (12, 4), (13, 3), (3, 12)):
    step = tf.constant(step, tf.int64)  # As the optimizer counts its steps.
    got = training_step.step_seed(seed, step)
    want = _fold_in(_fold_in(tf.constant([seed, 0]), step), 0)  # Replica 0.
    np.testing.assert_array_equal(got, want)
    seeds[seed, int(step)] = tuple(got.numpy())
  assert len(set(seeds.values())) == len(seeds)  # Each step its own noise.


@pytest.mark.parametrize("loss_scaling", [False, True])
def test_the_loss_is_the_replicas_share_of_the_global_batch_mean(
    loss_scaling):
  model = helpers.small_model(**{"flow.num_flows": 2})
  batch = helpers.digits_batch(6)
  seed = tf.constant([5, 6], tf.int32)
  optimizer = None
  if loss_scaling:
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD())
  # 6 of the 12 examples of a global batch over two replicas.
  loss, sums = training_step.scaled_loss(model, batch, 0.5, seed, 12,
                                         optimizer=optimizer)
  surrogate, terms = model.per_example_loss(batch, 0.5, seed, training=True)
  assert not model.losses  # No regularization term to add.
  scale = float(optimizer.scale_loss(1.0)) if loss_scaling else 1.0
  assert scale != 1.0 or not loss_scaling
  assert float(loss) == pytest.approx(
      scale * float(tf.reduce_sum(surrogate)) / 12, rel=1e-6)
  assert set(sums) == set(terms) | {"count"} and float(sums["count"]) == 6
  for name, value in terms.items():
    assert float(sums[name]) == pytest.approx(float(tf.reduce_sum(value)),
                                              rel=1e-6), name
