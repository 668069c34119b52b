"""The flow contract on the other Keras backends, in a subprocess each.

The backend is chosen per process (KERAS_BACKEND), so tests/backend_checks.py
runs once under JAX: `flows.testing.check_flow` on every flow, a Keras `fit`
and `.keras` round trip, and `.keras` files across backends (saved here on
TensorFlow and loaded on JAX, and the reverse). PyTorch runs only when asked
for: VIB_FLOWS_TEST_BACKENDS=torch (or "jax,torch"); VIB_FLOWS_TEST_FULL=1
checks every rank, global flows and every flow's `.keras` file too.
"""

import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests import backend_checks
from vib_flows.flows import testing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = os.environ.get("VIB_FLOWS_TEST_BACKENDS", "jax").split(",")


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_flow_contract_on_another_backend(backend, tmp_path):
  if importlib.util.find_spec(backend) is None:
    pytest.skip(f"{backend} is not installed")
  points = np.random.default_rng(0).normal(size=(8, 2)).astype("float32")
  np.save(tmp_path / "x.npy", points)
  model = backend_checks.density_model()
  model(points)
  testing.randomize_weights(model, 0.3, seed=2)
  model.save(tmp_path / "tensorflow.keras")
  args = [sys.executable, os.path.join(ROOT, "tests", "backend_checks.py"),
          str(tmp_path)]
  if os.environ.get("VIB_FLOWS_TEST_FULL"):
    args.append("full")
  env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=ROOT)
  run = subprocess.run(args, env=env, capture_output=True, text=True,
                       timeout=1200, check=False)
  assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
  # Importing vib_flows.flows does not import TensorFlow.
  assert "IMPORTS no tensorflow False" in run.stdout, run.stdout[:2000]
  assert f"DONE {backend}" in run.stdout
  outputs = np.load(tmp_path / f"{backend}_outputs.npz")
  # Saved on TensorFlow, loaded on the other backend: the same numbers.
  np.testing.assert_allclose(outputs["from_tensorflow"], model(points),
                             rtol=1e-5, atol=1e-5)
  # Saved on the other backend, loaded here.
  reloaded = keras.models.load_model(tmp_path / f"{backend}.keras",
                                     compile=False)
  np.testing.assert_allclose(reloaded(points), outputs["mine"],
                             rtol=1e-5, atol=1e-5)
