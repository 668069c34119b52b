"""Shared helpers of the end-to-end tests: configs and subprocess runs."""

import json
import os
import socket
import subprocess
import sys

from vib_flows import config_files

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
  from vib_flows import distribute  # pylint: disable=g-import-not-at-top
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
  result = subprocess.run(
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
