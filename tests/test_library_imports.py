"""The library (flows, distributions, objectives, networks, models) is alone.

Someone reusing a flow layer needs TensorFlow, TFP and Keras only. A fresh
process where the application's packages cannot be imported (as if they were
not installed) must still import every library module. Keras itself imports
matplotlib and scikit-learn when they are installed and skips them when not,
so the test hides them rather than looking for them in `sys.modules`.
"""

import subprocess
import sys

import pytest

from tests import helpers

APPLICATION_PACKAGES = ("matplotlib", "tensorflow_datasets", "sklearn",
                        "tensorflow_serving")
LIBRARY_MODULES = ("vib_flows", "vib_flows.flows", "vib_flows.distributions",
                   "vib_flows.objectives", "vib_flows.networks",
                   "vib_flows.models")
APPLICATION_MODULES = (
    "vib_flows.data", "vib_flows.train", "vib_flows.evaluate",
    "vib_flows.export", "vib_flows.sweep", "vib_flows.plots",
    "vib_flows.benchmark", "vib_flows.main", "vib_flows.config_checks",
    "vib_flows.distribute", "vib_flows.summaries", "vib_flows.workdir",
    "vib_flows.diagnostics", "vib_flows.host", "vib_flows.checkpoints",
    "vib_flows.faults")  # Prefixes: packages too (vib_flows.train_loop).

_CHILD = f"""
import importlib, sys
for name in {APPLICATION_PACKAGES!r}:
  sys.modules[name] = None  # `import name` now raises ImportError.
for name in {LIBRARY_MODULES!r}:
  importlib.import_module(name)
loaded = sorted(m for m in sys.modules if sys.modules[m] is not None and
                m.startswith({APPLICATION_MODULES!r}))
print("APPLICATION MODULES LOADED:", loaded)
assert not loaded, loaded
"""


@pytest.mark.slow  # A fresh process imports TensorFlow: 15-30 s here.
def test_library_imports_without_the_application_packages():
  result = subprocess.run(
      [sys.executable, "-c", _CHILD], env=helpers.env(), capture_output=True,
      text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stdout + result.stderr[-3000:]
