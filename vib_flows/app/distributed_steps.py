"""The distributed train step and the call that runs several steps.

One custom distributed loop for every strategy. The model is a
single-replica view (its `per_example_loss`); only the trainer knows the
strategy (TF Model Garden / orbit style). Each replica computes its
per-example losses, scales them for the global batch
(`training_step.scaled_loss`, as the models' own `fit` does), and the Keras
optimizer all-reduces the gradients.

Steps per call: one `tf.function` call runs up to `train.steps_per_call` steps
in a `tf.while_loop` and sums the per-example terms on the device, so the host
waits for the device once per call, not once per step (Keras'
`steps_per_execution`). Where the batches come from: `batch_sources`.
"""

from absl import logging
import tensorflow as tf

from vib_flows import objectives
from vib_flows import training_step


def use_xla(config, strategy):
  """Whether to XLA-compile the gradient computation (`train.jit_compile`).

  Not with several replicas on logical CPU devices of one process (the set-up
  that tests strategies without GPUs): XLA then reads a replica's variables
  from the wrong CPU device and fails. GPUs and one-device runs compile.
  """
  if not config.train.jit_compile:
    return False
  if strategy.num_replicas_in_sync == 1:
    return True
  devices = strategy.extended.worker_devices
  if len(devices) > 1 and all("CPU" in d.upper() for d in devices):
    logging.info("XLA off: %d replicas on logical CPU devices.", len(devices))
    return False
  return True


def _replica_share_of_sum(grads, num_replicas):
  """All-reduced gradients / num_replicas (None gradients stay None)."""
  present = [g for g in grads if g is not None]
  summed = iter(tf.distribute.get_replica_context().all_reduce(
      tf.distribute.ReduceOp.SUM, present))
  return [None if g is None else next(summed) / num_replicas for g in grads]


def _make_distributed_step(state):
  """Returns the Python function of one distributed step.

  See make_train_step.
  """
  config, model, optimizer, strategy = (
      state.config, state.model, state.optimizer, state.strategy
  )
  global_batch = config.train.batch_size
  clip_global_batch = bool(config.optimizer.clipnorm) and (
      strategy.num_replicas_in_sync > 1)

  def gradients(batch, beta, seed):
    # The same loss and scaling as the model's own `train_step` (fit).
    with tf.GradientTape() as tape:
      scaled, sums = training_step.scaled_loss(
          model, batch, beta, seed, global_batch, optimizer=optimizer)
    grads = tape.gradient(scaled, model.trainable_variables)
    return grads, sums

  # With one replica XLA compiles the whole step, optimizer update included
  # (docs/performance.md); with several, only the gradients, as the update
  # all-reduces across replicas.
  xla = use_xla(config, strategy)
  whole_step_xla = xla and strategy.num_replicas_in_sync == 1
  compute_gradients = (
      tf.function(gradients, jit_compile=True, autograph=False)
      if xla and not whole_step_xla else gradients
  )

  def replica_step(batch):
    # The KL weight, its warm-up and the noise seed are the model's, as in
    # its `train_step` (fit): read at trace time.
    step = optimizer.iterations
    beta = objectives.beta_schedule(step, model.beta, model.warmup_steps)
    seed = training_step.step_seed(model.seed, step)
    grads, sums = compute_gradients(batch, beta, seed)
    if clip_global_batch:  # make_optimizer: clip(g, c) = N clip(g/N, c/N).
      grads = _replica_share_of_sum(grads, strategy.num_replicas_in_sync)
    optimizer.apply(grads, model.trainable_variables)
    sums["beta"] = tf.cast(beta, tf.float32) * sums["count"]
    return sums

  run_replica = (
      tf.function(replica_step, jit_compile=True, autograph=False)
      if whole_step_xla else replica_step
  )

  def distributed_step(batch):
    sums = strategy.run(run_replica, args=(batch,))
    return {
        k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
        for k, v in sums.items()
    }

  return distributed_step


def make_train_step(state):
  """Returns a tf.function running one distributed step; gives summed terms.

  The returned function takes a distributed batch and returns a dict of the
  per-example terms summed over the global batch (plus "count" and "beta",
  beta times count). Step t weights the KL by
  `beta_schedule(t, model.beta, model.warmup_steps)` and draws its noise
  from `step_seed(model.seed, t)`, as the model's `train_step` does; the
  values are read when the function is first traced.
  """
  return tf.function(_make_distributed_step(state), autograph=False)


def _make_steps(state):
  """Returns `run_steps(next_batch, num_steps)`, traced into a tf.function.

  `next_batch(i)` gives the distributed batch of the call's i-th step; the
  result is the summed terms as `make_train_loop` describes.
  """
  step = _make_distributed_step(state)
  variables = state.model.trainable_variables
  keys = tuple(state.model.term_names) + ("count", "beta")

  def run_steps(next_batch, num_steps):
    def body(i, sums):
      new = step(next_batch(i))
      if set(new) != set(keys):
        raise ValueError(f"The model's step gives terms {sorted(new)}, "
                         f"expected {sorted(keys)} (its term_names).")
      return i + 1, {k: sums[k] + new[k] for k in keys}

    zeros = {k: tf.constant(0.0, tf.float32) for k in keys}
    _, sums = tf.while_loop(lambda i, _: i < num_steps, body,
                            (tf.constant(0, tf.int32), zeros))
    sums["nonfinite_parameters"] = tf.add_n([
        tf.reduce_sum(tf.cast(~tf.math.is_finite(v), tf.float32))
        for v in variables
    ])
    return sums

  return run_steps


def make_train_loop(state):
  """Returns a tf.function running several distributed steps in one call.

  `train_steps(iterator, num_steps)` runs `num_steps` >= 1 steps (a
  `tf.while_loop`; `num_steps` is a tensor, so one trace serves every length)
  and returns the per-example terms summed over the steps and the global
  batches (with "count", and "beta" times count), plus "nonfinite_parameters":
  the number of NaN or infinite entries of the trainable variables after the
  last step. Nothing is copied to the host between the steps.
  """
  run_steps = _make_steps(state)

  # No autograph: the loop is written as a tf.while_loop, and converting the
  # model's code (Keras, TFP) only adds tracing time. The step is traced once.
  @tf.function(autograph=False)
  def train_steps(iterator, num_steps):
    return run_steps(lambda i: next(iterator), num_steps)

  return train_steps


def make_gathering_train_loop(state):
  """`make_train_loop` with each batch gathered from tensors in the loop.

  `train_steps(features, order, first, num_steps)` runs steps first+1 ..
  first+num_steps of an epoch (counted from 0 within it): step j reads the
  rows order[j B : (j + 1) B] of every tensor of `features` (the training
  split: "x" [N, ...] float32, "y" [N] int32), B = train.batch_size; `order`
  [N] is `data.epoch_order`, the permutation the epoch's tf.data pipeline
  would read. Returns what `make_train_loop`'s function returns. One
  replica only (`data.gathers_in_graph`).
  """
  run_steps = _make_steps(state)
  batch_size = int(state.config.train.batch_size)

  @tf.function(autograph=False)
  def train_steps(features, order, first, num_steps):
    def next_batch(i):
      rows = tf.slice(order, [(first + i) * batch_size], [batch_size])
      return {k: tf.gather(v, rows) for k, v in features.items()}
    return run_steps(next_batch, num_steps)

  return train_steps
