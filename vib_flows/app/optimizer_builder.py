"""The optimizer a config names, and its moving averages of the weights."""

import contextlib

import keras
import tensorflow as tf

from vib_flows import optimizers


def make_optimizer(optimizer_config, mixed_precision=False, num_replicas=1,
                   steps_per_epoch=1, ema_decay=0.0):
  """Returns the Keras optimizer named by `optimizer.name`.

  The learning rate is `optimizer.learning_rate`, or with
  `optimizer.decay_every_epochs` = E > 0 the staircase schedule
  lr_t = learning_rate * decay_rate^floor(t / (E * steps_per_epoch)) at step
  t (Keras' `ExponentialDecay`; Alemi et al. 2017: 0.97 every 2 epochs).
  Adam and Adamax take `optimizer.beta_1`. With `ema_decay` = d > 0 the
  optimizer also keeps an exponential moving average of the trainable
  weights, a <- d a + (1 - d) w after every step (a = w after the first),
  in its own variables (Keras' `use_ema`), so checkpoints save it;
  `averaged_weights` swaps it in.

  Adam and Adamax are Keras' with the per-variable update as one fused
  TensorFlow kernel (`vib_flows.optimizers`: same maths; docs/performance.md
  says why).

  `optimizer.clipnorm` = c > 0 clips the global-batch gradient g by its
  global norm, g * min(1, c / ||g||) over all variables together (Keras'
  `global_clipnorm`; Keras' `clipnorm` would clip each variable's gradient
  on its own). Keras clips before its all-reduce, i.e. each replica's share;
  so with N replicas the train step hands every replica g / N, the already
  all-reduced gradient, and the optimizer clips at c / N:
  N * clip(g / N, c / N) = clip(g, c) (`distributed_steps.make_train_step`).
  """
  learning_rate = optimizer_config.learning_rate
  every = int(optimizer_config.get("decay_every_epochs", 0))
  if every:
    learning_rate = keras.optimizers.schedules.ExponentialDecay(
        learning_rate, decay_steps=every * max(int(steps_per_epoch), 1),
        decay_rate=float(optimizer_config.decay_rate), staircase=True)
  kwargs = {"learning_rate": learning_rate}
  if optimizer_config.name in ("adam", "adamax"):
    kwargs["beta_1"] = float(optimizer_config.get("beta_1", 0.9))
  if ema_decay:
    kwargs.update(use_ema=True, ema_momentum=float(ema_decay))
  if optimizer_config.clipnorm:
    kwargs["global_clipnorm"] = optimizer_config.clipnorm / num_replicas
  optimizer = optimizers.get(optimizer_config.name, **kwargs)
  if mixed_precision:
    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
  return optimizer


def moving_averages(optimizer):
  """The optimizer's moving averages of the trainable weights, or [] if none.

  In the order of the variables the optimizer was built with (the model's
  `trainable_variables`).
  """
  inner = getattr(optimizer, "inner_optimizer", optimizer)  # Loss scaling.
  if not getattr(inner, "use_ema", False):
    return []
  return list(inner._model_variables_moving_average)  # pylint: disable=protected-access


@contextlib.contextmanager
def averaged_weights(model, optimizer):
  """Within the block the model holds the moving averages of its weights.

  Swaps the trainable weights with the optimizer's moving averages
  (`make_optimizer`'s `ema_decay`) and back on exit; without averages it
  changes nothing. Validation and the kept best weights are taken inside it.
  """
  averages = moving_averages(optimizer)
  if not averages:
    yield
    return
  variables = model.trainable_variables
  saved = [tf.identity(v) for v in variables]
  for variable, average in zip(variables, averages):
    variable.assign(average)
  try:
    yield
  finally:
    for variable, value in zip(variables, saved):
      variable.assign(value)
