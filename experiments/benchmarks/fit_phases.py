"""Where a step of `model.fit` goes: examples/density_2d.py's model, per phase.

    python -m experiments.benchmarks.fit_phases [--repeats=9]
    KERAS_BACKEND=jax python -m experiments.benchmarks.fit_phases

The model of examples/density_2d_benchmark.py (4 spline couplings, batch 200,
Adam) and its plain-MLP control, each timed in one process, cases
interleaved repeat by repeat, 50 steps a case; ms per step, medians. Each
TensorFlow case adds one layer of machinery to the one before it, so the
differences say where the time goes:

  1. compute: 50 training steps (forward, gradients, Adam, the loss
     metric) inside one XLA program (a `tf.while_loop` in one
     `jit_compile=True` function): the step's arithmetic alone;
  2. + XLA calls: 50 calls of the XLA-compiled step from one graph: adds
     what TensorFlow does per call of a compiled function (among it, its
     resource variables, about 75 for the flow model with Adam's slots,
     read in and written back);
  3. + Keras's loop: `fit` with the recipe (`vib_flows.fit_settings`) on one
     epoch of 50 steps: adds the tf.data input and Keras's loop around the
     step (`steps_per_execution`: an iterator `Optional` and a `cond` per
     step, in the graph);
  4. + epochs: the same, as 5 epochs of 10 steps (the example's epochs):
     adds Keras's work per epoch (new iterators, metric resets and reads,
     callbacks);
  5. defaults: `fit` on the NumPy arrays at Keras's defaults, 5 x 10 steps.

On JAX: 1. as above (`lax.fori_loop` over `train_step` in one `jax.jit`);
2. 50 calls of the jitted step from Python; 5. `fit` at the defaults,
5 x 10 steps (JAX compiles by default). Runs of different backends are
different processes, at different times: compare within a run.
"""

import os
import statistics
import time

from absl import app
from absl import flags
import keras
from keras import ops
import numpy as np

import experiments
from vib_flows import fit_settings

_REPEATS = flags.DEFINE_integer("repeats", 9, "Timed repeats of each case.")

BATCH_SIZE = 200
STEPS = 50


def _model(kind):
  """The density model ("flow") or the plain-MLP control ("mlp").

  examples/density_2d_benchmark.py's own `build_model`, seeded.
  """
  keras.utils.set_random_seed(0)
  return experiments.example_module("density_2d_benchmark").build_model(kind)


def _compile(model, **kwargs):
  model.compile(optimizer=keras.optimizers.Adam(3e-3),
                loss=lambda unused_targets, log_prob: -ops.mean(log_prob),
                **kwargs)
  return model


def _points(num):
  """Two-moons-like points [num, 2] (the timing does not depend on them)."""
  rng = np.random.default_rng(0)
  angle = rng.uniform(0, np.pi, num)
  upper = np.arange(num) % 2 == 0
  points = np.stack([np.where(upper, np.cos(angle), 1 - np.cos(angle)),
                     np.where(upper, np.sin(angle), 0.5 - np.sin(angle))], -1)
  return (points + 0.05 * rng.normal(size=points.shape)).astype("float32")


def tensorflow_cases(kind):
  """Name -> callable running STEPS training steps, TensorFlow backend."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  x_train = _points(STEPS // 5 * BATCH_SIZE)  # 10 batches.
  xb = tf.constant(x_train[:BATCH_SIZE])
  yb = xb[:, 0]
  inner, outer, fit_model, defaults = (
      _compile(_model(kind)), _compile(_model(kind)),
      _compile(_model(kind), **fit_settings.compile_kwargs()),
      _compile(_model(kind)))
  for model in (inner, outer):
    model.train_on_batch(xb, yb)  # Builds the optimizer's variables.
  step = tf.function(lambda x, y: outer.train_step((x, y)), jit_compile=True)

  @tf.function(jit_compile=True)
  def compute():
    for _ in tf.range(STEPS):
      inner.train_step((xb, yb))
    return tf.constant(0)

  @tf.function
  def xla_calls():
    for _ in tf.range(STEPS):
      step(xb, yb)
    return tf.constant(0)

  epoch = fit_settings.training_dataset(x_train, x_train[:, 0],
                                        batch_size=BATCH_SIZE, seed=0)
  one_long_epoch = tf.data.Dataset.from_tensor_slices(
      (x_train, x_train[:, 0])).cache().repeat(5).shuffle(
          len(x_train), seed=0).batch(BATCH_SIZE, drop_remainder=True).prefetch(
              tf.data.AUTOTUNE)
  return {
      "1. compute (one XLA program)": lambda: compute().numpy(),
      "2. + XLA calls": lambda: xla_calls().numpy(),
      "3. + Keras's loop (fit, 1 x 50)": lambda: fit_model.fit(
          one_long_epoch, epochs=1, verbose=0, shuffle=False),
      "4. + epochs (fit, 5 x 10)": lambda: fit_model.fit(
          epoch, epochs=5, verbose=0, shuffle=False),
      "5. defaults (fit, 5 x 10)": lambda: defaults.fit(
          x_train, x_train[:, 0], batch_size=BATCH_SIZE, epochs=5,
          verbose=0),
  }


def jax_cases(kind):
  """Name -> callable running STEPS training steps, JAX backend."""
  import jax  # pylint: disable=g-import-not-at-top

  x_train = _points(STEPS // 5 * BATCH_SIZE)
  xb = jax.numpy.asarray(x_train[:BATCH_SIZE])
  yb = xb[:, 0]
  model = _compile(_model(kind))
  model.train_on_batch(x_train[:BATCH_SIZE], x_train[:BATCH_SIZE, 0])
  state = ([v.value for v in model.trainable_variables],
           [v.value for v in model.non_trainable_variables],
           [v.value for v in model.optimizer.variables],
           [v.value for v in model.metrics_variables])

  def body(unused_i, state):
    return model.train_step(state, (xb, yb))[1]

  compute = jax.jit(lambda state: jax.lax.fori_loop(0, STEPS, body, state))
  one_step = jax.jit(lambda state: model.train_step(state, (xb, yb))[1])

  def calls():
    s = state
    for _ in range(STEPS):
      s = one_step(s)
    return s

  defaults = _compile(_model(kind))
  return {
      "1. compute (one XLA program)":
          lambda: jax.block_until_ready(compute(state)),
      "2. + jitted calls from Python": lambda: jax.block_until_ready(calls()),
      "5. defaults (fit, 5 x 10)": lambda: defaults.fit(
          x_train, x_train[:, 0], batch_size=BATCH_SIZE, epochs=5,
          verbose=0),
  }


def main(argv):
  """Times every case of the current backend and prints the table."""
  del argv
  backend = keras.backend.backend()
  make = {"tensorflow": tensorflow_cases, "jax": jax_cases}.get(backend)
  if make is None:
    raise app.UsageError(f"Runs on TensorFlow or JAX, not {backend}.")
  cases = {(kind, name): run for kind in ("flow", "mlp")
           for name, run in make(kind).items()}
  for run in cases.values():  # Tracing, compilation, the retrace of fit.
    run()
    run()
  times = {key: [] for key in cases}
  for _ in range(_REPEATS.value):
    for key, run in cases.items():
      start = time.perf_counter()
      run()
      times[key].append((time.perf_counter() - start) / STEPS * 1e3)
  print(f"{backend}, ms per training step (batch {BATCH_SIZE}), medians of "
        f"{_REPEATS.value} interleaved repeats of {STEPS} steps:\n")
  print("| phase | 4 spline couplings | plain MLP |")
  print("| --- | --- | --- |")
  for name in dict.fromkeys(n for _, n in cases):
    flow, mlp = (statistics.median(times[(kind, name)])
                 for kind in ("flow", "mlp"))
    print(f"| {name} | {flow:.2f} | {mlp:.2f} |")
  print(f"\n{os.cpu_count()} CPUs; KERAS_BACKEND={backend}")


if __name__ == "__main__":
  app.run(main)
