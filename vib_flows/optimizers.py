"""Adam and Adamax whose per-variable update is one fused TensorFlow kernel.

Keras 3 writes the Adam and Adamax updates as backend-neutral element-wise
ops, 6-8 per variable. Without XLA every one of them is a separate kernel and
a separate pass over the variable, a large share of a small model's step
(docs/performance.md). TensorFlow's own training kernels, `ResourceApplyAdam`
and `ResourceApplyAdaMax` (those of tf.keras 2's optimizers), do the same
update in one pass and have XLA implementations too.

The maths are Keras' own (Kingma & Ba 2015, Algorithm 1, and Section 7.1 for
AdaMax), with t the step counted from 1, g the gradient, b1, b2, lr, eps the
optimizer's settings:

  Adam     m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2,
           w <- w - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
  AdaMax   m <- b1 m + (1 - b1) g,   u <- max(b2 u, |g|),
           w <- w - lr / (1 - b1^t) * m / (u + eps)

so the two classes differ from Keras' only in rounding
(tests/test_optimizers.py: against the paper's equations in float64, against
Keras' update in float32). Everything around the
update (learning-rate schedules, gradient clipping, weight decay, loss
scaling, the all-reduce of distribution strategies, slot variable names and
hence checkpoints) is Keras' unchanged; AMSGrad and sparse gradients
(`tf.IndexedSlices`) use Keras' own update.
"""

import keras
import tensorflow as tf


def _resource(variable):
  """The tf.Variable (or distributed variable) behind a Keras variable."""
  return variable.value if isinstance(variable, keras.Variable) else variable


def _as(value, dtype):
  """A setting (Python number, tensor or callable) as a `dtype` scalar.

  Python numbers go straight to `dtype`: `tf.cast` would round them to
  float32 first.
  """
  if callable(value):
    value = value()
  if isinstance(value, (tf.Tensor, tf.Variable, keras.Variable)):
    return tf.cast(value, dtype)
  return tf.constant(value, dtype)


def _step_powers(optimizer, dtype):
  """(b1^t, b2^t) for the step t = iterations + 1 of this update."""
  t = tf.cast(optimizer.iterations + 1, dtype)
  return (tf.pow(_as(optimizer.beta_1, dtype), t),
          tf.pow(_as(optimizer.beta_2, dtype), t))


def _kernel_args(optimizer, gradient, variable, learning_rate):
  """The arguments both fused kernels share, in the variable's dtype."""
  dtype = variable.dtype
  return dict(
      var=_resource(variable).handle,
      lr=tf.cast(learning_rate, dtype),
      beta1=_as(optimizer.beta_1, dtype), beta2=_as(optimizer.beta_2, dtype),
      epsilon=_as(optimizer.epsilon, dtype),
      grad=tf.cast(gradient, dtype))


@keras.saving.register_keras_serializable(package="vib_flows")
class FusedAdam(keras.optimizers.Adam):
  """keras.optimizers.Adam with the update as one `ResourceApplyAdam` kernel.

  Same constructor, config and slot variables as Keras' Adam.
  """

  def update_step(self, gradient, variable, learning_rate):
    if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
      return super().update_step(gradient, variable, learning_rate)
    index = self._get_variable_index(variable)
    beta_1_power, beta_2_power = _step_powers(self, variable.dtype)
    tf.raw_ops.ResourceApplyAdam(
        m=_resource(self._momentums[index]).handle,
        v=_resource(self._velocities[index]).handle,
        beta1_power=beta_1_power, beta2_power=beta_2_power,
        **_kernel_args(self, gradient, variable, learning_rate))
    return None


@keras.saving.register_keras_serializable(package="vib_flows")
class FusedAdamax(keras.optimizers.Adamax):
  """keras.optimizers.Adamax with the update as one `ResourceApplyAdaMax`.

  Same constructor, config and slot variables as Keras' Adamax.
  """

  def update_step(self, gradient, variable, learning_rate):
    if isinstance(gradient, tf.IndexedSlices):
      return super().update_step(gradient, variable, learning_rate)
    index = self._get_variable_index(variable)
    beta_1_power, _ = _step_powers(self, variable.dtype)
    tf.raw_ops.ResourceApplyAdaMax(
        m=_resource(self._m[index]).handle,
        v=_resource(self._u[index]).handle,
        beta1_power=beta_1_power,
        **_kernel_args(self, gradient, variable, learning_rate))
    return None


# config.optimizer.name -> the optimizer class: the one list of the names
# (the config checks and the trainer both read it).
OPTIMIZERS = {
    "adam": FusedAdam,
    "adamax": FusedAdamax,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
}


def names() -> tuple[str, ...]:
  """The optimizer names `get` takes, in the order errors list them."""
  return tuple(OPTIMIZERS)


def get(name: str, **kwargs: object) -> keras.optimizers.Optimizer:
  """A new optimizer `name` (one of `names()`) constructed with `kwargs`.

  Raises:
    ValueError: an unknown name (the message lists the valid ones).
  """
  if name not in OPTIMIZERS:
    raise ValueError(
        f"Unknown optimizer.name {name!r}; valid: {', '.join(names())}.")
  return OPTIMIZERS[name](**kwargs)
