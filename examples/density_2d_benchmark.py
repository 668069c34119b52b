"""Training speed of examples/density_2d.py's model on each Keras backend.

    python examples/density_2d_benchmark.py [--epochs=5]

The backend is chosen per process, so each installed backend (TensorFlow,
JAX, PyTorch) trains the same model (4 spline coupling layers with Reverse
between them, the two-moons data, batch 200, Adam) in its own process: one
warm-up epoch (tracing and compilation), then `--epochs` timed epochs of
`model.fit`. Prints training steps per second for each backend.
"""

import argparse
import importlib.util
import math
import os
import subprocess
import sys
import time

BACKENDS = ("tensorflow", "jax", "torch")
BATCH_SIZE = 200


def steps_per_second(epochs):
  """Trains density_2d.py's model in this process; returns steps/s."""
  import keras  # pylint: disable=g-import-not-at-top
  from keras import ops  # pylint: disable=g-import-not-at-top
  from sklearn.datasets import make_moons  # pylint: disable=g-import-not-at-top

  from vib_flows import flows  # pylint: disable=g-import-not-at-top

  keras.utils.set_random_seed(0)
  x_train = make_moons(2000, noise=0.05, random_state=0)[0].astype("float32")
  x = keras.Input((2,), name="x")
  u, log_det = flows.make_stack("spline", 4)(x)
  log_prob = -0.5 * ops.sum(u**2, axis=-1) - math.log(2 * math.pi) + log_det
  model = keras.Model(x, log_prob, name="moons_density")
  model.compile(optimizer=keras.optimizers.Adam(3e-3),
                loss=lambda unused_targets, log_prob: -ops.mean(log_prob))
  model.fit(x_train, x_train[:, 0], batch_size=BATCH_SIZE, epochs=1,
            verbose=0)
  start = time.perf_counter()
  model.fit(x_train, x_train[:, 0], batch_size=BATCH_SIZE, epochs=epochs,
            verbose=0)
  steps = epochs * math.ceil(len(x_train) / BATCH_SIZE)
  return steps / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=5)
  parser.add_argument("--worker", action="store_true",
                      help="measure in this process (KERAS_BACKEND)")
  args = parser.parse_args()
  if args.worker:
    print(f"{steps_per_second(args.epochs):.1f}")
    return
  for backend in BACKENDS:
    if importlib.util.find_spec(backend) is None:
      print(f"{backend}: not installed")
      continue
    run = subprocess.run(
        [sys.executable, __file__, "--worker", f"--epochs={args.epochs}"],
        env=dict(os.environ, KERAS_BACKEND=backend), capture_output=True,
        text=True, check=False)
    lines = run.stdout.strip().splitlines()
    if run.returncode == 0 and lines:
      print(f"{backend}: {lines[-1]} training steps/s")
    else:
      print(f"{backend}: failed\n{run.stderr[-2000:]}")


if __name__ == "__main__":
  main()
