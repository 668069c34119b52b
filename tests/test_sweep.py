"""Tests of the results sweep (vib_flows/sweep.py), on tiny networks."""

import json
import os

import numpy as np
import pytest

from tests import helpers
from vib_flows import sweep


def _tiny_vib_config():
  """configs/test.py-sized networks as a VIB (labels, [0, 1] inputs)."""
  config = helpers.config("test")
  config.model.kind = "vib"
  config.data.preprocess = "scale"
  config.train.num_epochs = 1
  return config


def test_grids_cover_the_issue():
  vae = {e["name"] for e in sweep.vae_grid()}
  assert "none" in vae
  for flow in ("planar4", "planar16", "radial4", "iaf4",
               "sylvester_orthogonal4", "sylvester_householder4",
               "sylvester_triangular4", "real_nvp4", "spline4"):
    assert {f"{flow}_global", f"{flow}_amortized"} <= vae
  vib = sweep.vib_grid()
  assert sweep.DETERMINISTIC in {e["name"] for e in vib}
  assert {e.get("beta") for e in vib} >= set(sweep.VIB_BETAS)
  with pytest.raises(ValueError, match="Unknown configurations"):
    sweep.select(vib, ["no_such_config"])
  iaf = sweep.iaf_grid()
  assert len(iaf) == 2 * len(sweep.IAF_FORGET_BIASES)
  config = sweep.make_config(iaf[0], seed=0)
  assert (config.flow.name, config.flow.forget_bias) == ("iaf", 0.0)
  assert not config.flow.amortized and iaf[-1]["overrides"]["flow.amortized"]


def test_make_config_applies_grid_and_flags():
  entry = next(e for e in sweep.vae_grid() if e["name"] == "planar16_amortized")
  config = sweep.make_config(entry, seed=2, epochs=7, importance_samples=11)
  assert (config.flow.name, config.flow.num_flows) == ("planar", 16)
  assert config.flow.amortized and config.seed == 2
  assert config.train.num_epochs == 7
  assert config.eval.num_importance_samples == 11
  assert config.model.num_levels == 17 and config.model.latent_dim == 16
  assert not config.export.enabled


def test_information_plane_has_the_baseline_as_a_level(tmp_path):
  configs = [
      {"name": sweep.DETERMINISTIC, "summary": {
          "test_izy_lower": {"mean": 1.9, "std": 0.1, "n": 3}}},
      {"name": "none_beta0.1", "beta": 0.1, "label": "no flow", "summary": {
          "test_kl": {"mean": 4.0}, "test_izy_lower": {"mean": 1.8}}},
  ]
  assert sweep.information_plane_points(configs) == [
      {"beta": 0.1, "izx": 4.0, "izy": 1.8, "label": "no flow"}]
  levels = sweep.information_plane_levels(configs)
  assert list(levels.values()) == [1.9]
  from vib_flows import plots  # pylint: disable=g-import-not-at-top
  plots.save_information_plane(sweep.information_plane_points(configs),
                               str(tmp_path / "plane.png"), levels=levels)
  assert (tmp_path / "plane.png").stat().st_size > 1000


def test_mean_std_uses_sample_std():
  s = sweep.mean_std([1.0, 3.0])
  assert s == {"mean": 2.0, "std": pytest.approx(np.sqrt(2.0)), "n": 2}
  assert sweep.mean_std([5.0])["std"] == 0.0


@pytest.mark.slow
def test_tiny_vib_sweep_writes_results_and_resumes(tmp_path):
  only = ["none_beta0.001", "iaf2_amortized_beta0.001"]
  lines = []
  results = sweep.run_sweep(
      "vib_digits", str(tmp_path), seeds=2, only=only,
      base_config=_tiny_vib_config(), command="test", log=lines.append)
  assert len(lines) == 4 and all("done" in line for line in lines)
  written = json.loads((tmp_path / "results.json").read_text())
  assert written["configs"][0]["name"] == "none_beta0.001"
  for config in results["configs"]:
    assert sorted(config["runs"]) == ["0", "1"]
    accuracy = config["summary"]["test_accuracy"]
    assert accuracy["n"] == 2 and 0.0 <= accuracy["mean"] <= 1.0
    assert accuracy["std"] >= 0.0
    assert config["summary"]["train_seconds"]["mean"] > 0
  iaf = results["configs"][1]["runs"]["0"]
  assert iaf["log_det_max_error"] < 1e-3  # Autodiff Jacobian agrees.
  table = (tmp_path / "results.md").read_text()
  assert "| no flow | 0.001 |" in table and " ± " in table
  assert (tmp_path / "information_plane.png").stat().st_size > 1000

  # Resuming: finished runs are skipped, their metrics left untouched.
  path = tmp_path / "none_beta0.001" / "seed0" / "metrics.json"
  before = os.stat(path).st_mtime_ns
  lines.clear()
  sweep.run_sweep("vib_digits", str(tmp_path), seeds=2, only=only,
                  base_config=_tiny_vib_config(), log=lines.append)
  assert len(lines) == 4 and all("skipped" in line for line in lines)
  assert os.stat(path).st_mtime_ns == before


@pytest.mark.slow
def test_tiny_vae_and_deterministic_runs(tmp_path):
  vae_base = helpers.config("test")
  vae_base.train.num_epochs = 1
  results = sweep.run_sweep(
      "vae_digits", str(tmp_path / "vae"), seeds=2,
      only=["none", "planar4_global"], base_config=vae_base, log=print)
  for config in results["configs"]:
    s = config["summary"]
    assert s["test_log_likelihood"]["n"] == 2
    assert s["test_log_likelihood"]["mean"] >= s["test_elbo"]["mean"] - 1.0
  table = (tmp_path / "vae" / "results.md").read_text()
  assert "| planar K=4 global |" in table
  planar = results["configs"][1]["runs"]["0"]
  assert planar["log_det_max_error"] < 1e-3
  assert 0 <= planar["active_units_zk"] <= 16
  assert planar["train_log_likelihood"] >= planar["train_elbo"]

  # A run finished before the diagnostics existed gets them on the next run
  # of the sweep command, from its best checkpoint: the same numbers.
  path = tmp_path / "vae" / "planar4_global" / "seed0" / "metrics.json"
  old = {k: v for k, v in planar.items()
         if k not in sweep.DIAGNOSTIC_KEYS + ("train_elbo",)}
  path.write_text(json.dumps(old))
  config_path = path.parent / "config.json"  # Written before forget_bias.
  config_json = json.loads(config_path.read_text())
  del config_json["flow"]["forget_bias"]
  config_path.write_text(json.dumps(config_json))
  lines = []
  again = sweep.run_sweep(
      "vae_digits", str(tmp_path / "vae"), seeds=1, only=["planar4_global"],
      base_config=vae_base, log=lines.append)
  assert "skipped" in lines[0]
  filled = again["configs"][0]["runs"]["0"]
  for key in sweep.DIAGNOSTIC_KEYS + ("train_elbo", "log_det_max_error"):
    assert filled[key] == pytest.approx(planar[key], rel=1e-5), key
  metrics, ran = sweep.run_one(
      {"name": sweep.DETERMINISTIC},
      sweep.make_config(sweep.vib_grid()[0], 0, 1, 0, _tiny_vib_config()),
      str(tmp_path / "det"))
  assert ran and 0.1 < metrics["test_accuracy"] <= 1.0
  assert metrics["test_izy_lower"] <= metrics["label_entropy"]


def test_runs_with_different_configs_are_flagged(tmp_path):
  for seed, warmup in ((0, 1000), (1, 1000), (2, 200)):
    directory = tmp_path / "none" / f"seed{seed}"
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({
        "seed": seed, "loss": {"warmup_steps": warmup},
        "train": {"num_epochs": 40, "jit_compile": seed == 0},
        "eval": {"num_importance_samples": 10 * seed}}))
  assert sweep.protocol_mismatches(str(tmp_path), "none", [0, 1]) == []
  assert sweep.protocol_mismatches(str(tmp_path), "none", [0, 1, 2]) == [
      (2, ["loss"])]
