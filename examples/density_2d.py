"""Flow layers in your own Keras model: a density model of 2-D points.

The flow maps data x to a standard-normal u (the normalizing direction), so
    log p(x) = log N(u; 0, I) + log|det du/dx|
needs only the forward pass: any flow works, even those without an inverse.
Trained with model.fit, saved as .keras, reloaded with the same outputs.

Runs on every Keras backend (the flows are written with keras.ops):

    python examples/density_2d.py                       # TensorFlow
    KERAS_BACKEND=jax python examples/density_2d.py
    KERAS_BACKEND=torch python examples/density_2d.py   # with PyTorch
    python examples/density_2d.py --benchmark

--benchmark trains the same model on each installed backend in its own
process (the backend is chosen per process) and prints training steps per
second (batch 200, after one warm-up epoch).
"""

import importlib.util
import math
import os
import subprocess
import sys
import time

import keras
from keras import ops
from sklearn.datasets import make_moons

from vib_flows import flows

BACKENDS = ("tensorflow", "jax", "torch")


def negative_log_likelihood(unused_targets, log_prob):
  return -ops.mean(log_prob)


def make_model():
  x = keras.Input((2,), name="x")
  stack = flows.make_stack("spline", 4)  # Spline layers, Reverse between.
  u, log_det = stack(x)
  log_prob = -0.5 * ops.sum(u**2, axis=-1) - math.log(2 * math.pi) + log_det
  model = keras.Model(x, log_prob, name="moons_density")
  model.compile(optimizer=keras.optimizers.Adam(3e-3),
                loss=negative_log_likelihood)
  return model


def steps_per_second(x_train, epochs=5, batch_size=200):
  """Training steps per second of `make_model` after one warm-up epoch."""
  model = make_model()
  model.fit(x_train, x_train[:, 0], batch_size=batch_size, epochs=1,
            verbose=0)
  start = time.perf_counter()
  model.fit(x_train, x_train[:, 0], batch_size=batch_size, epochs=epochs,
            verbose=0)
  steps = epochs * math.ceil(len(x_train) / batch_size)
  return steps / (time.perf_counter() - start)


def benchmark():
  """Steps per second on every installed backend, one process each."""
  for backend in BACKENDS:
    if importlib.util.find_spec(backend) is None:
      print(f"{backend}: not installed")
      continue
    env = dict(os.environ, KERAS_BACKEND=backend)
    run = subprocess.run([sys.executable, __file__, "--steps-per-second"],
                         env=env, capture_output=True, text=True, check=False)
    lines = run.stdout.strip().splitlines()
    print(f"{backend}: " + (lines[-1] if run.returncode == 0 and lines
                            else "failed\n" + run.stderr[-2000:]))


def main():
  keras.utils.set_random_seed(0)  # Same weights and batches on every run.
  x_train = make_moons(2000, noise=0.05, random_state=0)[0].astype("float32")
  x_test = make_moons(500, noise=0.05, random_state=1)[0].astype("float32")
  if "--steps-per-second" in sys.argv:
    print(f"{steps_per_second(x_train):.1f} training steps/s")
    return
  model = make_model()
  model.fit(x_train, x_train[:, 0], batch_size=200, epochs=40, verbose=0)
  print(f"{keras.backend.backend()}: held-out log-likelihood per point:",
        float(ops.mean(model(x_test))))
  model.save("moons_density.keras")
  reloaded = keras.models.load_model("moons_density.keras", compile=False)
  print("same after reload:",
        bool(ops.all(reloaded(x_test) == model(x_test))))


if __name__ == "__main__":
  if "--benchmark" in sys.argv:
    benchmark()
  else:
    main()
