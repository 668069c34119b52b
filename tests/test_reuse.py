"""Flow layers inside a model the user writes, exactly as docs/flows.md shows.

The docs' example is run as written in one process (trained with
model.fit, saved as .keras); a second, fresh process reloads the file and must
give the same outputs. The example file and the docs block are one text.
"""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tests import helpers
from tests import warm_processes

EXAMPLE = os.path.join(helpers.ROOT, "examples", "density_2d.py")


def readme_example():
  with open(os.path.join(helpers.ROOT, "docs", "flows.md")) as f:
    blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
  return next(b for b in blocks if "moons_density" in b)


def test_readme_shows_the_example_file():
  with open(EXAMPLE) as f:
    source = f.read()
  assert readme_example().strip() in source


@pytest.mark.slow
def test_density_model_trains_saves_and_reloads_in_a_fresh_process(tmp_path):
  record = (
      "\nimport numpy as np\n"
      "np.save('x_test.npy', x_test)\n"
      "np.save('expected.npy', ops.convert_to_numpy(model(x_test)))\n"
  )
  script = tmp_path / "example.py"
  script.write_text(readme_example() + record)
  run = warm_processes.run(
      [sys.executable, str(script)], cwd=tmp_path, env=helpers.env(),
      capture_output=True, text=True, timeout=300,
  )
  assert run.returncode == 0, run.stderr[-3000:]
  held_out = float(re.search(r"per point: (\S+)", run.stdout).group(1))
  x_test = np.load(tmp_path / "x_test.npy")
  # A Gaussian fitted to the test points themselves is the flow's baseline.
  centred = x_test - x_test.mean(0)
  cov = centred.T @ centred / len(x_test)
  gaussian = -0.5 * (2 * np.log(2 * np.pi) + np.log(np.linalg.det(cov)) + 2)
  assert held_out > gaussian + 1.0
  load = (
      "import keras, numpy as np\n"
      "import vib_flows.flows\n"
      "m = keras.models.load_model('moons_density.keras', compile=False)\n"
      "np.save('reloaded.npy', keras.ops.convert_to_numpy("
      "m(np.load('x_test.npy'))))\n"
  )
  reload_run = subprocess.run(
      [sys.executable, "-c", load], cwd=tmp_path, env=helpers.env(),
      capture_output=True, text=True, timeout=300,
  )
  assert reload_run.returncode == 0, reload_run.stderr[-3000:]
  np.testing.assert_array_equal(
      np.load(tmp_path / "reloaded.npy"), np.load(tmp_path / "expected.npy")
  )
