"""What a measurement ran on: CPU, cores, memory, GPUs, versions, load.

The benchmark (`python -m experiments.benchmark`) and the results sweeps record
`describe()` next to their numbers; `summary` is its one-line form.
"""

import os
import platform
from typing import Any

import keras
import tensorflow as tf
import tensorflow_probability as tfp


def _cpu_name() -> str:
  """The "model name" of /proc/cpuinfo, else what `platform` knows."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
  """MemTotal of /proc/meminfo in GiB, or None where it is not readable."""
  try:
    with open("/proc/meminfo", encoding="ascii") as f:
      return int(f.readline().split()[1]) / 1024**2
  except (OSError, ValueError, IndexError):
    return None


def describe() -> dict[str, Any]:
  """This machine and software: a JSON-serializable dict.

  Keys: cpu, logical_cpus, memory_gib (None if unknown), gpus (count),
  python, tensorflow, keras, tensorflow_probability, load_average (1, 5 and
  15 minutes).
  """
  return {
      "cpu": _cpu_name(), "logical_cpus": os.cpu_count(),
      "memory_gib": _memory_gib(),
      "gpus": len(tf.config.list_physical_devices("GPU")),
      "python": platform.python_version(), "tensorflow": tf.__version__,
      "keras": keras.__version__, "tensorflow_probability": tfp.__version__,
      "load_average": list(os.getloadavg()),
  }


def summary(info: dict[str, Any]) -> str:
  """One line of a `describe()` dict: CPU, cores, GPUs, Python, TensorFlow."""
  return (f"{info['cpu']}, {info['logical_cpus']} CPU cores, {info['gpus']} "
          f"GPU; Python {info['python']}, TensorFlow {info['tensorflow']}")
