"""A non-editable install works without the checkout.

`pip install .` (not `-e`) of a copy of the sources into a fresh virtual
environment, then the main job from a directory outside the checkout: the
installed package must hold everything the job needs (the library, the
application, the data code), and nothing of the experiments, which run from a
checkout only (`experiments/`). The dependencies are not downloaded again: the
new environment sees this one's site-packages through a .pth file (a plain
path entry, so this environment's editable install of vib_flows, itself a
.pth hook, is not active there).
"""

import json
import os
import pathlib
import shutil
import site
import subprocess
import sys
import sysconfig

import pytest

from tests import helpers

_CHECK_IMPORTS = """
import importlib.util, json, os, sys
import vib_flows, vib_flows.main
print(json.dumps({
    "vib_flows": os.path.dirname(vib_flows.__file__),
    "experiments": importlib.util.find_spec("experiments") is not None,
    "prefix": sys.prefix}))
"""


def _child_env():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  env.pop("PYTHONPATH", None)  # Nothing of the checkout on the path.
  env.pop("TF_CONFIG", None)
  return env


def _run(args, cwd, timeout=600):
  result = subprocess.run(args, cwd=cwd, env=_child_env(),
                          capture_output=True, text=True, timeout=timeout,
                          check=False)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
  return result


@pytest.mark.slow  # An install and the tiny main job: about a minute.
def test_non_editable_install_runs_the_main_job_outside_the_checkout(
    tmp_path):
  root = pathlib.Path(helpers.ROOT)
  # A copy of the sources (experiments included: setup.py must leave them
  # out), so that the build leaves the checkout untouched.
  source = tmp_path / "source"
  source.mkdir()
  for name in ("setup.py", "README.md"):
    shutil.copy(root / name, source / name)
  for name in ("vib_flows", "experiments"):
    shutil.copytree(root / name, source / name,
                    ignore=shutil.ignore_patterns("__pycache__"))
  venv = tmp_path / "venv"
  _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
  python = str(venv / "bin" / "python")
  purelib = _run([python, "-c", "import sysconfig; "
                  "print(sysconfig.get_paths()['purelib'])"],
                 tmp_path).stdout.strip()
  here = site.getsitepackages() + [sysconfig.get_paths()["purelib"]]
  if site.ENABLE_USER_SITE:
    here.append(site.getusersitepackages())
  here = [p for p in dict.fromkeys(here) if os.path.isdir(p)]
  pathlib.Path(purelib, "_dependencies.pth").write_text("\n".join(here))
  _run([python, "-m", "pip", "install", "-q", "--no-deps",
        "--no-build-isolation", str(source)], tmp_path)

  outside = tmp_path / "elsewhere"
  outside.mkdir()
  found = json.loads(_run([python, "-c", _CHECK_IMPORTS],
                          outside).stdout.strip().splitlines()[-1])
  assert pathlib.Path(found["vib_flows"]).is_relative_to(venv), found
  assert not pathlib.Path(found["vib_flows"]).is_relative_to(root), found
  assert not found["experiments"], found

  workdir = outside / "run"
  _run([python, "-m", "vib_flows.main",
        f"--config={root / 'configs' / 'test.py'}", f"--workdir={workdir}"],
       outside)
  metrics = json.loads((workdir / "metrics.json").read_text())
  assert metrics["num_test_examples"] == 447
  assert metrics["step"] == metrics["best_step"] > 0
  assert metrics["test_log_likelihood"] >= metrics["test_elbo"] - 1e-3
  assert (outside / "saved_models" / "vae_digits" / "1").is_dir()
