"""Smoke test of `python -m experiments.benchmark --quick`."""

import ast
import json
import re
import resource
import subprocess
import sys

import pytest

from experiments.benchmarks import runs as runs_lib
from experiments.benchmarks import whole_run
from tests import helpers

QUICK_ROWS = ("vae_none", "vae_planar8", "hand_vae", "vae_none in-memory",
              "vae_none tf.data", "iwae K=1", "iwae K=100")


def _rows_of(table):
  """{case: [cells]} of the Markdown table the command prints."""
  rows = {}
  for line in table.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if line.startswith("| ") and cells[0] not in ("case", ""):
      rows[cells[0]] = cells
  return rows


def _number(cell):
  return float(re.sub(r"[,%]", "", cell))


@pytest.mark.slow
def test_quick_run_prints_the_table_and_writes_json(tmp_path):
  path = tmp_path / "bench.json"
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  result = subprocess.run(
      [sys.executable, "-m", "experiments.benchmark", "--quick",
       f"--json={path}"],
      cwd=helpers.ROOT, env=helpers.env(), capture_output=True, text=True,
      timeout=300, check=False)
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  assert result.returncode == 0, result.stderr[-3000:]
  # The work of --quick in CPU seconds (user + system), which other jobs on
  # the machine do not stretch as they stretch wall time (a loaded machine
  # doubled it): about 45 s on 2 cores.
  cpu_seconds = (after.ru_utime - before.ru_utime
                 + after.ru_stime - before.ru_stime)
  assert cpu_seconds < 120, f"--quick took {cpu_seconds:.0f} CPU seconds"
  rows = _rows_of(result.stdout)
  assert set(QUICK_ROWS) <= set(rows), result.stdout
  for case in QUICK_ROWS:
    examples_per_second, ms_per_step = rows[case][2], rows[case][3]
    assert _number(examples_per_second) > 0 and _number(ms_per_step) > 0
  assert rows["iwae K=100"][8]  # Peak memory growth is reported.
  document = json.loads(path.read_text())
  assert {"machine", "settings", "rows", "targets"} <= set(document)
  assert document["settings"]["quick"] is True
  by_case = {r["case"]: r for r in document["rows"]}
  assert set(QUICK_ROWS) <= set(by_case)
  assert by_case["vae_none"]["ratio_of"] == "hand_vae"
  assert by_case["vae_planar8"]["ratio"] > 0
  assert by_case["vae_none tf.data"]["ratio"] > 0
  assert all(by_case[f"iwae K={k}"]["detail"]["finite"] for k in (1, 100))
  names = [t["name"] for t in document["targets"]]
  assert any("hand_vae" in n for n in names)
  assert any("tf.data" in n for n in names)


def test_jax_reference_trains_on_the_main_jobs_protocol():
  """The whole-run case gives the JAX reference every field it compares."""
  config = whole_run.main_job_config()
  protocol = whole_run.jax_protocol(config)
  assert protocol == {
      "epochs": config.train.num_epochs, "warmup": config.loss.warmup_steps,
      "patience": config.train.early_stopping_patience,
      "batch": config.train.batch_size, "optimizer": config.optimizer.name,
      "learning_rate": config.optimizer.learning_rate,
      "activation": config.model.activation}
  # The reference's `train` takes exactly these (read without importing JAX,
  # which the test extras do not install).
  with open(whole_run.JAX_REFERENCE) as f:
    tree = ast.parse(f.read())
  train_fn = next(n for n in tree.body
                  if isinstance(n, ast.FunctionDef) and n.name == "train")
  assert set(protocol) <= {a.arg for a in train_fn.args.args}
  config.optimizer.name = "sgd"
  config.loss.num_samples = 2
  with pytest.raises(ValueError, match="optimizer.name=sgd, loss.num_samples"):
    whole_run.jax_protocol(config)
  # The no-flow run is the reference's model: no flow, standard normal
  # prior; the main-job run is the file as shipped.
  reference_model = whole_run.run_config(no_flow=True, seed=1, xla=False)
  assert reference_model.runtime.intra_op_threads == 1  # As the file.
  assert whole_run.run_config(
      True, 1, False, intra_op_threads=0).runtime.intra_op_threads == 0
  assert (reference_model.flow.num_flows, reference_model.model.prior,
          reference_model.seed, reference_model.train.jit_compile,
          reference_model.export.enabled) == (0, "standard_normal", 1, False,
                                              False)
  main_job = whole_run.run_config(no_flow=False, seed=0)
  shipped = whole_run.main_job_config()
  assert (main_job.flow.to_dict(), main_job.model.to_dict()) == (
      shipped.flow.to_dict(), shipped.model.to_dict())


def test_whole_run_rows_compare_runs_and_epochs_with_jax(monkeypatch):
  # The timed runs are replaced by fixed results (each real one takes
  # seconds to minutes); what is tested is the table made of them. Building
  # is left out of the ratios on both sides: JAX's takes 5 s here, which
  # would otherwise count against vib_flows' 1 s.
  def run(train, epochs, build):
    return {"seconds": build + train, "build_seconds": build,
            "train_seconds": train, "epochs": epochs, "steps": 1}

  timed = {"jax": run(10.0, 50, 5.0), True: run(20.0, 40, 1.0),
           False: run(12.0, 60, 1.0)}

  def fake_run(which, seed, no_flow=False, xla=True, intra_op_threads=None):
    del seed
    if intra_op_threads is not None:
      assert no_flow and not xla and intra_op_threads == 0
      return run(8.0, 50, 1.0)
    return timed["jax" if which == "jax" else xla]

  monkeypatch.setattr(whole_run, "run_in_subprocess", fake_run)
  monkeypatch.setattr(whole_run, "jax_available", lambda: True)
  rows = {(r["case"], r["xla"]): r for r in whole_run.rows([0, 1])}
  no_flow_off = rows[("digits_run_no_flow", False)]
  assert no_flow_off["seconds_per_run"] == 13.0
  assert no_flow_off["train_seconds_per_run"] == 12.0
  assert no_flow_off["build_seconds_per_run"] == 1.0
  assert no_flow_off["ratio"] == pytest.approx(10.0 / 12.0)
  assert no_flow_off["seconds_per_epoch"] == pytest.approx(0.2)
  # Per epoch JAX takes 0.2 s too: the runs differ only in epochs run.
  assert no_flow_off["ratio_per_epoch"] == pytest.approx(1.0)
  assert "per epoch JAX / this 1.000" in no_flow_off["note"]
  assert "per epoch JAX / this 0.400" in rows[("digits_run_main_job",
                                               True)]["note"]
  assert rows[("jax_reference", None)]["ratio"] is None
  default_threads = rows[(whole_run.DEFAULT_THREADS_CASE, False)]
  assert default_threads["ratio"] == pytest.approx(10.0 / 8.0)
  # The targets judge the per-epoch ratio.
  targets = {t["name"]: t for t in runs_lib.targets(list(rows.values()))}
  target = targets["digits_run_no_flow (XLA off): JAX reference's training "
                   "seconds per epoch / its own"]
  assert target["value"] == pytest.approx(1.0) and target["met"]
