"""Shared helpers of the end-to-end tests: configs and subprocess runs."""

import json
import os
import socket
import sys

from tests import warm_processes
from vib_flows.app import config_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")


def config(name="test", **overrides):
  """Loads configs/NAME.py and applies dotted overrides ("train.num_epochs")."""
  cfg = config_files.load(os.path.join(CONFIGS, f"{name}.py"))
  for key, value in overrides.items():
    section, field = key.split("__") if "__" in key else key.split(".")
    cfg[section][field] = value
  return cfg


VIRTUAL_CPUS = 2


def two_cpu_config(strategy):
  """The tiny config on `strategy` over 2 logical CPUs, without export.

  The first call in a process also creates the logical CPUs, which must
  happen before TensorFlow initializes its devices (run it in its own process).
  """
  from vib_flows.app import distribute  # pylint: disable=g-import-not-at-top
  cfg = config("test")
  cfg.runtime.virtual_cpu_devices = VIRTUAL_CPUS
  cfg.runtime.strategy = strategy
  cfg.export.enabled = False
  distribute.configure_devices(cfg.runtime)
  return cfg


def env():
  """Environment of a child process: quiet TF, the repo importable."""
  child = dict(os.environ)
  child["TF_CPP_MIN_LOG_LEVEL"] = "2"
  child["PYTHONPATH"] = ROOT + os.pathsep + child.get("PYTHONPATH", "")
  child.pop("TF_CONFIG", None)
  return child


def run_main(args, timeout=600, check=True, extra_env=None):
  """Runs `python -m vib_flows.main ARGS`; returns the CompletedProcess."""
  child = env()
  child.update(extra_env or {})
  result = warm_processes.run(
      [sys.executable, "-m", "vib_flows.main", *args], cwd=ROOT, env=child,
      capture_output=True, text=True, timeout=timeout,
  )
  if check and result.returncode:
    raise AssertionError(
        f"main failed ({result.returncode}):\n{result.stderr[-4000:]}"
    )
  return result


def read_json(path):
  with open(path) as f:
    return json.load(f)


def free_ports(n):
  """N free TCP ports on localhost."""
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(("localhost", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def check_sample_axis_slices(layer, amortized, context_dim, seed):
  """A float64 flow on z [3, 4, 5] with context [4, C] equals its slices.

  z [S, B, d] with context [B, C] gives slice s = layer(z[s], context); one
  point z [d] (context [C]) gives a scalar log-det; amortized flows also take
  z [B, d] with context [S, B, C] (slice s: layer(z, context[s])), each
  context its own flow; leading shapes that do not broadcast are refused.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  import pytest  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  num_samples, batch, dim = 3, 4, 5
  rng = np.random.default_rng(seed)
  z = tf.constant(rng.normal(size=(num_samples, batch, dim)))
  context = tf.constant(rng.normal(size=(batch, context_dim)))
  y, log_det = layer(z, context=context)
  assert y.shape == (num_samples, batch, dim)
  assert log_det.shape == (num_samples, batch)
  for s in range(num_samples):
    y_s, log_det_s = layer(z[s], context=context)
    np.testing.assert_allclose(y[s], y_s, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(log_det[s], log_det_s, rtol=1e-12, atol=1e-12)
  y_1, log_det_1 = layer(z[1, 2], context=context[2])
  assert y_1.shape == (dim,) and log_det_1.shape == ()
  np.testing.assert_allclose(y_1, y[1, 2], rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(log_det_1, log_det[1, 2], rtol=1e-12, atol=1e-12)
  if not amortized:
    return
  contexts = tf.constant(rng.normal(size=(num_samples, batch, context_dim)))
  y_c, log_det_c = layer(z[0], context=contexts)
  assert y_c.shape == (num_samples, batch, dim)
  for s in range(num_samples):
    y_s, log_det_s = layer(z[0], context=contexts[s])
    np.testing.assert_allclose(y_c[s], y_s, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(log_det_c[s], log_det_s, rtol=1e-12,
                               atol=1e-12)
  # Each context gives its own flow.
  assert np.max(np.abs(log_det_c[0] - log_det_c[1])) > 1e-6
  with pytest.raises(ValueError, match=r"\(3, 4, 5\).*\(2, 3\)"):
    layer(z, context=context[:2])
