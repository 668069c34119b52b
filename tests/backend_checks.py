"""The flow contract on one Keras backend, run by tests/test_backends.py.

    KERAS_BACKEND=jax python tests/backend_checks.py DIRECTORY [full]

Runs `flows.testing.check_flow` on every registered flow, amortized at rank
3 with broadcast contexts (with `full`: global and amortized at ranks 1 to
4, and a `.keras` round trip of each); fits a small flow density
model a few steps with Keras `fit` and saves/reloads it as `.keras`; loads
DIRECTORY/tensorflow.keras (saved by the TensorFlow test process) and saves
DIRECTORY/<backend>.keras, writing both models' outputs on DIRECTORY/x.npy to
DIRECTORY/<backend>_outputs.npz. Prints one line per check and, first,
whether importing vib_flows.flows imported TensorFlow.
"""

import functools
import os
import sys

# Before vib_flows.flows: what importing the flows alone brings in.
before = set(sys.modules)
from vib_flows import flows  # noqa: E402  pylint: disable=g-import-not-at-top

imported = sorted({m.split(".")[0] for m in set(sys.modules) - before})
print("IMPORTS tensorflow" if "tensorflow" in sys.modules
      else "IMPORTS no tensorflow",
      "tensorflow_probability" in sys.modules, " ".join(imported))

import keras  # noqa: E402  pylint: disable=g-import-not-at-top
import numpy as np  # noqa: E402  pylint: disable=g-import-not-at-top

from vib_flows.flows import testing  # noqa: E402  pylint: disable=g-import-not-at-top

CONTEXT_DIM = 2


def density_model(dim=2):
  """Log p(x) of a 2-layer MAF stack (as examples/density_2d.py)."""
  x = keras.Input((dim,), name="x")
  u, log_det = flows.make_stack("maf", 2)(x)
  log_prob = (-0.5 * keras.ops.sum(u**2, axis=-1)
              - 0.5 * dim * np.log(2 * np.pi) + log_det)
  return keras.Model(x, log_prob)


def negative_log_likelihood(unused_targets, log_prob):
  return -keras.ops.mean(log_prob)


def main(directory, full=False):
  backend = keras.backend.backend()
  names = [n for n in flows.names()
           if flows.get_class(n).__module__.startswith("vib_flows.")]
  for name in names:
    for context_dim in (None, CONTEXT_DIM) if full else (CONTEXT_DIM,):
      testing.check_flow(functools.partial(flows.get, name), 3, context_dim,
                         ranks=(1, 2, 3, 4) if full else (3,), saving=full)
      print("CONTRACT", name, "global" if context_dim is None else "amortized")
  # Fit a few steps with Keras fit; save and reload.
  keras.utils.set_random_seed(0)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(256, 2)).astype("float32") * [2.0, 0.5] + [1.0, -1.0]
  model = density_model()
  model.compile(optimizer=keras.optimizers.Adam(1e-2),
                loss=negative_log_likelihood)
  before_fit = float(np.mean(keras.ops.convert_to_numpy(model(x))))
  model.fit(x, x[:, 0], batch_size=64, epochs=5, verbose=0)
  after_fit = float(np.mean(keras.ops.convert_to_numpy(model(x))))
  assert after_fit > before_fit + 0.3, (before_fit, after_fit)
  path = os.path.join(directory, f"{backend}_fit.keras")
  model.save(path)
  reloaded = keras.models.load_model(path, compile=False)
  np.testing.assert_array_equal(keras.ops.convert_to_numpy(reloaded(x)),
                                keras.ops.convert_to_numpy(model(x)))
  print("FIT", before_fit, after_fit)
  # Across backends.
  points = np.load(os.path.join(directory, "x.npy"))
  from_tf = keras.models.load_model(os.path.join(directory, "tensorflow.keras"),
                                    compile=False)
  mine = density_model()
  mine(points)
  testing.randomize_weights(mine, 0.3, seed=1)
  mine.save(os.path.join(directory, f"{backend}.keras"))
  np.savez(os.path.join(directory, f"{backend}_outputs.npz"),
           from_tensorflow=keras.ops.convert_to_numpy(from_tf(points)),
           mine=keras.ops.convert_to_numpy(mine(points)))
  print("DONE", backend)


if __name__ == "__main__":
  main(sys.argv[1], full=sys.argv[2:] == ["full"])
