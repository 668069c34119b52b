"""The phase study of whole runs (experiments/research/whole_run_phases.py).

Its arithmetic on fixed timings (the phases add up to the run's time, the
first call's excess is split off), the clocks it puts around the trainer's
functions (and takes off again), and a smoke run of two short epochs.
"""

import json
import subprocess
import sys

import pytest

from experiments.research import whole_run_phases
from tests import helpers


def test_phases_add_up_to_the_run_and_split_off_the_first_calls():
  calls = {"calls": [3.0, 0.5, 0.9, 0.4], "validation": [1.0, 0.1, 0.1, 0.1],
           "summaries": [0.3, 0.01, 0.01, 0.01], "order": [0.02] * 4,
           "best weights": [0.01] * 3, "checkpoints": [0.2, 0.2]}
  phases = whole_run_phases.package_phases(calls, build=0.5, total=9.0,
                                           steps_per_call=[10] * 4)
  assert set(phases) == set(whole_run_phases.PHASES)
  assert sum(phases.values()) == pytest.approx(9.0)
  # A later call takes 0.5 s (the median): the first one's excess is 2.5 s;
  # the steps are what the calls took, less it (a slow later call counts).
  assert phases["first call"] == pytest.approx(2.5)
  assert phases["steps"] == pytest.approx(3.0 + 0.5 + 0.9 + 0.4 - 2.5)
  assert phases["validation trace"] == pytest.approx(0.9)
  assert phases["validation"] == pytest.approx(0.4)
  assert phases["summaries trace"] == pytest.approx(0.29)
  assert phases["checkpoints"] == pytest.approx(0.4)
  assert phases["other"] == pytest.approx(
      9.0 - 0.5 - 3.0 - 0.5 - 0.9 - 0.4 - 1.3 - 0.33 - 0.08 - 0.03 - 0.4)


def test_clocks_time_the_trainers_functions_and_come_off():
  from vib_flows.app import checkpoint_io  # pylint: disable=g-import-not-at-top
  from vib_flows.app import evaluate  # pylint: disable=g-import-not-at-top
  original = evaluate.validation_metrics
  clock = whole_run_phases.Clock()
  with whole_run_phases.timed_phases(clock):
    assert evaluate.validation_metrics is not original
    assert checkpoint_io.save.__wrapped__ is not None
  assert evaluate.validation_metrics is original
  assert not hasattr(checkpoint_io.save, "__wrapped__")


def test_step_variants_change_the_main_job_one_field_at_a_time():
  main = whole_run_phases.variant_config({}).to_dict()
  for name, overrides in whole_run_phases.STEP_VARIANTS.items():
    config = whole_run_phases.variant_config(overrides).to_dict()
    changed = {f"{section}.{field}"
               for section, fields in config.items() if isinstance(fields, dict)
               for field, value in fields.items()
               if main[section][field] != value}
    assert changed == set(overrides), name
  assert main["flow"]["name"] == "sylvester_householder"
  assert not main["train"]["jit_compile"]


def test_table_gives_milliseconds_per_epoch_and_the_jax_ratio():
  def run(seconds, epochs, build):
    phases = dict.fromkeys(whole_run_phases.PHASES, 0.0)
    phases.update(build=build, steps=seconds - build)
    return {"seconds": seconds, "cpu_seconds": seconds, "epochs": epochs,
            "phases": phases}

  table = whole_run_phases.table({"jax": [run(10.0, 50, 5.0)],
                                  "no_flow_off": [run(8.0, 40, 0.4)]})
  rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
          for line in table.splitlines()[2:]}
  assert rows["steps"] == ["100.0", "190.0"]
  assert rows["**total**"] == ["**200.0**", "**200.0**"]
  assert rows["ratio JAX / this, per epoch"] == ["", "1.00"]
  # Without building: JAX 100 ms per epoch, this run 190.
  assert rows['the same without "build"'] == ["", "0.53"]


@pytest.mark.slow
def test_a_short_package_run_is_split_into_its_phases():
  out = subprocess.run(
      [sys.executable, "-m", "experiments.research.whole_run_phases",
       "--child=no_flow_off", "--seeds=0", "--epochs=2"],
      cwd=helpers.ROOT, env=helpers.env(), capture_output=True, text=True,
      timeout=600, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  run = json.loads(out.stdout.strip().splitlines()[-1])
  assert run["epochs"] == 2 and run["steps"] == 2 * (1000 // 32)
  phases = run["phases"]
  assert sum(phases.values()) == pytest.approx(run["seconds"])
  for phase in ("build", "first call", "steps", "validation", "checkpoints",
                "summaries"):
    assert phases[phase] > 0, phase
  assert phases["other"] < 0.5 * run["seconds"]
