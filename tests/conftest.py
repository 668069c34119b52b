"""Shared test set-up: quiet TensorFlow logs and a fixed Keras seed per test.

Hypothesis (tests/test_fuzz.py) draws the same examples on every run (the
"ci" profile, so a CI run is reproducible); `pytest
--hypothesis-profile=explore tests/test_fuzz.py` draws new ones, to look for
bugs. Keep an example that finds one as an @example case.
"""

import os

from hypothesis import settings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _seed():
  keras.utils.set_random_seed(0)
  yield


def pytest_collection_modifyitems(items):
  """Runs the files that hold slow tests first, each file's tests in order.

  pytest-xdist hands the tests out in this order: the long end-to-end
  processes start while the other worker runs short tests, instead of one
  of them finishing the run alone. Whole files move, so a file's module
  fixtures are still set up once per worker (and the session fixtures of
  tests/app/conftest.py once per worker, whichever files use them). The node
  ids hold the files' paths (tests/app/test_cli.py::...), in any directory.
  """
  slow_files = {item.nodeid.split("::")[0] for item in items
                if item.get_closest_marker("slow")}
  items.sort(key=lambda item: item.nodeid.split("::")[0] not in slow_files)
