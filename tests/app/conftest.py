"""Fixtures shared by the application's test files.

`trained_run` (a tiny run of the command line) and `served` (the test
exports, loaded without vib_flows). Session-scoped, so that what they train
or export is made once per test process (once per pytest-xdist worker),
whichever files use it.
"""

import fcntl
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tests import serving_requests
from vib_flows import data as data_lib
from vib_flows.app import export
from vib_flows.app import model_builder

LOADER = os.path.join(helpers.ROOT, "tests", "scripts", "load_saved_model.py")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, worker_id):
  """(workdir, stdout + stderr) of one tiny run logged to pipes.

  `python -m vib_flows.main` of configs/test.py with `helpers.TINY_RUN_FLAGS`.
  Trained once per test session, also under pytest-xdist: the workers share
  the run through a file lock in their common temporary directory.
  """
  root = tmp_path_factory.getbasetemp()
  if worker_id != "master":
    root = root.parent
  workdir, log = root / "cli_errors_run", root / "cli_errors_run.log"
  with open(root / "cli_errors_run.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not log.exists():
      result = helpers.run_main(["--config=configs/test.py",
                                 f"--workdir={workdir}",
                                 *helpers.TINY_RUN_FLAGS])
      log.write_text(result.stdout + result.stderr)
  return workdir, log.read_text()


def _build(kind):
  """(config, splits, built model) of the test export `kind`."""
  config = serving_requests.export_config(kind)
  splits = data_lib.load(config)
  model = model_builder.build_model(config, splits.info)
  x, y = splits.train.x[:2], splits.train.y[:2]
  model.per_example_loss({"x": x, "y": y}, tf.constant(1.0),
                         tf.constant([0, 0], tf.int32))
  return config, splits, model


@pytest.fixture(scope="session")
def served(tmp_path_factory):
  """The test exports (the VAE twice) run in a vib_flows-free process.

  One exported model per kind of tests/serving_requests.py (the VAE exported
  twice), each loaded once in a separate Python process that cannot import
  vib_flows (tests/scripts/load_saved_model.py), whose outputs and error
  messages tests/app/test_serving.py and tests/app/test_export.py check.
  Each export also gets the requests of tests/serving_requests.py
  (`refusals` and `answered`), as "extra" requests of the loader.

  Returns:
    kind -> {config, info, model, base (the export base directory), paths
    (of the versions), requests, outputs, report (of the loader)}.
  """
  root = tmp_path_factory.mktemp("export")
  max_rows = serving_requests.MAX_ROWS
  result = {}
  dirs = []
  for kind in serving_requests.KINDS:
    config, splits, model = _build(kind)
    base = str(root / kind)
    paths = [export.export_model(model, config, splits.info, base_dir=base)]
    if kind == "vae":
      paths.append(
          export.export_model(model, config, splits.info, base_dir=base))
    x = splits.test.x[:max_rows]
    z = np.random.default_rng(0).normal(size=(5, config.model.latent_dim))
    requests = {"x": x, "z": z.astype(np.float32)}
    extra = {**serving_requests.refusals(kind, x, requests["z"], max_rows),
             **serving_requests.answered(kind, x, max_rows)}
    np.savez(root / f"{kind}_requests.npz", **requests, **{
        f"extra/{sig}/{name}/{case}": value
        for case, (sig, name, value, *_) in extra.items()})
    result[kind] = dict(config=config, info=splits.info, model=model,
                        base=base, paths=paths, requests=requests)
    dirs.append(paths)
  for kind, paths in zip(serving_requests.KINDS, dirs):
    out = str(root / f"{kind}_out")
    child = helpers.env()
    child.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-I", LOADER, str(root / f"{kind}_requests.npz"),
         out, *paths],
        cwd=str(root), env=child, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result[kind]["outputs"] = dict(np.load(out + ".npz"))
    with open(out + ".json") as f:
      result[kind]["report"] = json.load(f)
  return result
