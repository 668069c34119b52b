"""The loss one replica differentiates, and the noise seed of each step.

Shared by the Keras `fit` of the models (`LatentVariableModel.train_step`) and
the command line's distributed trainer (`vib_flows.app.distributed_steps`), so
both scale the loss the same way and draw the same noise at the same step: a run
trained with either continues with the other.

Single-replica view: the models' `per_example_loss` gives per-example
surrogates [B]; `scaled_loss` turns them into this replica's share of the
global-batch mean, whose gradients the optimizer sums over replicas.
"""

from typing import TYPE_CHECKING

import keras
import tensorflow as tf

if TYPE_CHECKING:  # Only for the annotation: models imports this module.
  from vib_flows import models


def step_seed(seed: int | tf.Tensor, step: tf.Tensor) -> tf.Tensor:
  """The noise seed of training step `step` on the current replica.

      seed_t,r = fold_in(fold_in([seed, 0], t), r)

  (r = replica id in the sync group; 0 without a strategy). Used by the
  trainer and by `fit`, so both draw the same noise at the same step.

  Args:
    seed: the model's seed (`model.seed`, set from config.seed by the
      model builder).
    step: scalar integer tensor, the optimizer step before the update.

  Returns:
    int tensor [2], a stateless seed.
  """
  base = tf.stack([tf.cast(seed, tf.int32), tf.constant(0, tf.int32)])
  replica = tf.distribute.get_replica_context().replica_id_in_sync_group
  return tf.random.experimental.stateless_fold_in(
      tf.random.experimental.stateless_fold_in(base, step), replica)


def scaled_loss(
    model: "models.LatentVariableModel", batch: dict[str, tf.Tensor],
    beta: float | tf.Tensor, seed: tf.Tensor,
    global_batch_size: int | tf.Tensor,
    optimizer: keras.optimizers.Optimizer | None = None,
    training: bool = True,
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
  """The loss one replica differentiates, and the summed loss terms.

      loss = sum_b surrogate_b / global_batch_size
             + sum(model.losses) / num_replicas
      scaled = optimizer.scale_loss(loss)   (the loss scale under mixed
                                             precision; unchanged otherwise)

  (`tf.nn.compute_average_loss`, `tf.nn.scale_regularization_loss`). Summing
  the replicas' gradients of `scaled` (what the Keras optimizer does) gives
  the gradient of the global-batch mean loss.

  Args:
    model: a `VAE` / `VIB`.
    batch: this replica's batch, {"x": [B, ...], "y": [B] (VIB)}.
    beta: KL weight of this step.
    seed: int tensor [2] (`step_seed`).
    global_batch_size: examples in the batch over all replicas.
    optimizer: the optimizer applying the gradients (None: no loss scaling).
    training: update the score-function baseline and use training mode.

  Returns:
    (scaled loss, scalar float32 sums over this replica's batch of each
    per-example term of `per_example_loss`, plus "count" = B).
  """
  surrogate, terms = model.per_example_loss(batch, beta, seed,
                                            training=training)
  loss = tf.nn.compute_average_loss(surrogate,
                                    global_batch_size=global_batch_size)
  if model.losses:
    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
  if optimizer is not None:
    loss = optimizer.scale_loss(loss)
  sums = {k: tf.reduce_sum(tf.cast(v, tf.float32)) for k, v in terms.items()}
  sums["count"] = tf.cast(tf.shape(surrogate)[0], tf.float32)
  return loss, sums
