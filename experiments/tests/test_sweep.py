"""Tests of the results sweeps (experiments/sweeps/), on tiny networks."""

import dataclasses
import json
import os
import sys

import numpy as np
import pytest

from experiments.sweeps import aggregate
from experiments.sweeps import grids
from experiments.sweeps import markdown
from experiments.sweeps import run
from tests import helpers
from tests import warm_processes
from vib_flows.app import evaluate
from vib_flows.app import plots
from vib_flows.app import run_state


def _tiny_vib_config():
  """configs/test.py-sized networks as a VIB (labels, [0, 1] inputs)."""
  return helpers.config("test", **helpers.VIB, **{"train.num_epochs": 1})


def test_grids_cover_every_flow_and_beta():
  vae = {e["name"] for e in grids.grid("vae_digits")}
  assert "none" in vae
  for flow in ("planar4", "planar16", "radial4", "iaf4",
               "sylvester_orthogonal4", "sylvester_householder4",
               "sylvester_triangular4", "real_nvp4", "spline4"):
    assert {f"{flow}_global", f"{flow}_amortized"} <= vae
  vib = grids.grid("vib_digits")
  assert grids.DETERMINISTIC in {e["name"] for e in vib}
  assert {e.get("beta") for e in vib} >= set(grids.VIB_BETAS)
  with pytest.raises(ValueError, match="Unknown configurations"):
    grids.grid("vib_digits", ["no_such_config"])
  with pytest.raises(ValueError, match="Unknown sweep 'vae'; valid: vae_"):
    grids.grid("vae")
  iaf = grids.grid("iaf_digits")
  assert len(iaf) == 2 * len(grids.IAF_FORGET_BIASES)
  config = grids.make_config(iaf[0], seed=0)
  assert (config.flow.name, config.flow.forget_bias) == ("iaf", 0.0)
  assert not config.flow.amortized and iaf[-1]["overrides"]["flow.amortized"]


def test_make_config_applies_grid_and_flags():
  entry = next(e for e in grids.grid("vae_digits")
               if e["name"] == "planar16_amortized")
  config = grids.make_config(entry, seed=2, epochs=7, importance_samples=11)
  assert (config.flow.name, config.flow.num_flows) == ("planar", 16)
  assert config.flow.amortized and config.seed == 2
  assert config.train.num_epochs == 7
  assert config.eval.num_importance_samples == 11
  assert config.model.num_levels == 17 and config.model.latent_dim == 16
  assert not config.export.enabled


def test_information_plane_has_the_baseline_as_a_level(tmp_path):
  configs = [
      {"name": grids.DETERMINISTIC, "summary": {
          "test_izy_lower": {"mean": 1.9, "std": 0.1, "n": 3}}},
      {"name": "none_beta0.1", "beta": 0.1, "label": "no flow", "summary": {
          "test_kl": {"mean": 4.0}, "test_izy_lower": {"mean": 1.8}}},
  ]
  assert aggregate.information_plane_points(configs) == [
      {"beta": 0.1, "izx": 4.0, "izy": 1.8, "label": "no flow"}]
  levels = aggregate.information_plane_levels(configs)
  assert list(levels.values()) == [1.9]
  plots.save_information_plane(aggregate.information_plane_points(configs),
                               str(tmp_path / "plane.png"), levels=levels)
  assert (tmp_path / "plane.png").stat().st_size > 1000


def test_mean_std_uses_sample_std():
  s = aggregate.mean_std([1.0, 3.0])
  assert s == {"mean": 2.0, "std": pytest.approx(np.sqrt(2.0)), "n": 2}
  assert aggregate.mean_std([5.0])["std"] == 0.0


@pytest.mark.slow
def test_tiny_vib_sweep_writes_results_and_resumes(tmp_path):
  only = ["none_beta0.001", "iaf2_amortized_beta0.001"]
  lines = []
  results = run.run_sweep(
      "vib_digits", str(tmp_path), seeds=2, only=only,
      base_config=_tiny_vib_config(), command="test", log=lines.append)
  assert len(lines) == 4 and all(": trained in" in line for line in lines)
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
  run.run_sweep("vib_digits", str(tmp_path), seeds=2, only=only,
                  base_config=_tiny_vib_config(), log=lines.append)
  assert len(lines) == 4 and all(
      "skipped (metrics.json exists)" in line for line in lines)
  assert os.stat(path).st_mtime_ns == before


@pytest.mark.slow
def test_tiny_vae_and_deterministic_runs(tmp_path):
  vae_base = helpers.config("test")
  vae_base.train.num_epochs = 1
  results = run.run_sweep(
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
  # The validation split's ELBO and IW bound, from the same K log-weights.
  assert planar["validation_importance_samples"] == (
      vae_base.eval.num_importance_samples)
  assert planar["validation_log_likelihood"] >= planar["validation_elbo"]
  assert "validation -log p(x) (IW)" in table

  # A run finished before the diagnostics existed gets them on the next run
  # of the sweep command, from its best checkpoint: the same numbers.
  path = tmp_path / "vae" / "planar4_global" / "seed0" / "metrics.json"
  old = {k: v for k, v in planar.items()
         if k not in run.DIAGNOSTIC_KEYS + run.VALIDATION_KEYS
         + ("train_elbo",)}
  path.write_text(json.dumps(old))
  lines = []
  again = run.run_sweep(
      "vae_digits", str(tmp_path / "vae"), seeds=1, only=["planar4_global"],
      base_config=vae_base, log=lines.append)
  assert ("planar4_global seed 0: finished before; filled in model "
          "diagnostics, validation metrics in") in lines[0]
  filled = again["configs"][0]["runs"]["0"]
  # --first_seed: the seeds first_seed.. only (seed 1 is done: skipped).
  later = run.run_sweep(
      "vae_digits", str(tmp_path / "vae"), seeds=1, first_seed=1,
      only=["none"], base_config=vae_base, log=lines.append)
  assert "none seed 1: skipped" in lines[-1]
  assert list(later["configs"][0]["runs"]) == ["1"]
  assert later["first_seed"] == 1
  for key in run.DIAGNOSTIC_KEYS + run.VALIDATION_KEYS + (
      "train_elbo", "log_det_max_error"):
    assert filled[key] == pytest.approx(planar[key], rel=1e-5), key
  # Independently: the evaluator's own IW estimate (other random draws) on
  # the validation split; the test split is poisoned with NaN, so scoring it
  # instead would show.
  state = run_state.restore_run(str(path.parent))
  poisoned = dataclasses.replace(
      state.splits, test=dataclasses.replace(
          state.splits.test, x=np.full_like(state.splits.test.x, np.nan)))
  ours = run.validation_metrics(state.model, poisoned, state.config)
  evaluator = evaluate.test_metrics(
      state.model, dataclasses.replace(poisoned, test=poisoned.validation),
      state.config)
  assert ours["validation_log_likelihood"] == pytest.approx(
      evaluator["test_log_likelihood"], abs=0.3)
  assert ours["validation_elbo"] == pytest.approx(evaluator["test_elbo"],
                                                  abs=0.3)
  metrics, done = run.run_one(
      {"name": grids.DETERMINISTIC},
      grids.make_config(grids.grid("vib_digits")[0], 0, 1, 0,
                        _tiny_vib_config()),
      str(tmp_path / "det"))
  assert done == run.TRAINED and 0.1 < metrics["test_accuracy"] <= 1.0
  assert metrics["test_izy_lower"] <= metrics["label_entropy"]
  # Its epochs as the CSV history holds them (what a resumed run reads).
  assert metrics["history_complete"] and not metrics["resumed"]
  assert metrics["epochs_run"] == len(metrics["validation_loss"]) == 1
  assert (tmp_path / "det" / "history.csv").exists()


def test_runs_with_different_configs_are_flagged(tmp_path):
  for seed, warmup in ((0, 1000), (1, 1000), (2, 200)):
    directory = tmp_path / "none" / f"seed{seed}"
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({
        "seed": seed, "loss": {"warmup_steps": warmup},
        "train": {"num_epochs": 40, "jit_compile": seed == 0},
        "eval": {"num_importance_samples": 10 * seed}}))
  assert aggregate.protocol_mismatches(str(tmp_path), "none", [0, 1]) == []
  assert aggregate.protocol_mismatches(str(tmp_path), "none", [0, 1, 2]) == [
      (2, ["loss"])]


def test_a_config_predating_a_field_matches_its_default_but_not_others(
    tmp_path):
  # Seed 0's config.json was written before data.num_classes existed; its
  # run inferred the classes, as num_classes = 0 does.
  for seed, data in ((0, {"name": "digits"}),
                     (1, {"name": "digits", "num_classes": 0}),
                     (2, {"name": "digits", "num_classes": 10})):
    directory = tmp_path / "vib" / f"seed{seed}"
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({
        "seed": seed, "data": data, "train": {"num_epochs": 40}}))
  assert aggregate.protocol_mismatches(str(tmp_path), "vib", [0, 1]) == []
  assert aggregate.protocol_mismatches(str(tmp_path), "vib", [0, 1, 2]) == [
      (2, ["data"])]


def test_markdown_negates_elbo_and_warns_of_mixed_protocols():
  summary = {"test_elbo": aggregate.mean_std([-91.0, -89.0]),
             "test_log_likelihood": aggregate.mean_std([-88.0])}
  results = {
      "sweep": "vae_digits", "command": "cmd",
      "machine": {"cpu": "CPU X", "logical_cpus": 2, "gpus": 0,
                  "python": "3.11", "tensorflow": "2.21"},
      "configs": [{"name": "planar4_global", "label": "planar K=4 global",
                   "summary": summary, "protocol_mismatches": [(1, ["loss"])],
                   "runs": {"0": {"log_det_max_error": 2e-6},
                            "1": {"log_det_max_error": 3e-6}}}],
  }
  text = markdown.markdown(results)
  # One seed gave the log-likelihood: its mean alone, no "± 0.00".
  assert "| planar K=4 global | 90.00 ± 1.41 | 88.00 | - |" in text
  assert "| 3.0e-06 | 2 |" in text
  assert "WARNING: the runs of planar4_global" in text
  assert "Machine: CPU X, 2 CPU cores, 0 GPU; Python 3.11" in text


@pytest.mark.slow
def test_command_line_reports_from_finished_runs(tmp_path):
  """`python -m experiments.sweep --report_only` on a directory with no runs."""
  result = warm_processes.run(
      [sys.executable, "-m", "experiments.sweep", "--sweep=vib_digits",
       f"--workdir={tmp_path}", "--seeds=1", "--only=none_beta0.1",
       "--report_only"],
      env=helpers.env(), capture_output=True, text=True, timeout=300,
      check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "| no flow | 0.1 | - |" in result.stdout
  assert json.loads((tmp_path / "results.json").read_text())["seeds"] == 1


def test_synthetic_grids_cover_every_flow_on_a_2d_latent():
  flows = ("planar1", "planar4", "planar16", "radial4", "iaf4",
           "sylvester_orthogonal4", "sylvester_householder4",
           "sylvester_triangular4", "real_nvp4", "spline4")
  expected = {"none"} | {f"{f}_{form}" for f in flows
                         for form in ("global", "amortized")}
  for sweep, decoder in (("synthetic_true", "true"),
                         ("synthetic_learned", "learned")):
    entries = grids.grid(sweep)
    assert {e["name"] for e in entries} == expected
    assert len(entries) == len(expected)
    configs = [grids.make_config(e, seed=1, epochs=3) for e in entries]
    for entry, config in zip(entries, configs):
      assert config.data.name == "synthetic:banana"
      assert config.model.decoder == decoder
      assert config.model.latent_dim == 2
      assert config.train.num_epochs == 3  # One protocol for every row.
      if config.flow.name.startswith("sylvester") and config.flow.num_flows:
        assert 1 <= config.flow.num_ortho_vectors <= config.model.latent_dim
      assert config.flow.amortized == entry["name"].endswith("_amortized")
    none = configs[[e["name"] for e in entries].index("none")]
    assert none.flow.num_flows == 0


def _synthetic_config(name, label, gaps, elbo=-28.0):
  runs = {str(k): {"test_exact_gap": g, "test_elbo": elbo,
                   "test_exact_log_likelihood": elbo + g,
                   "test_exact_iw_gap": g / 10}
          for k, g in enumerate(gaps)}
  return {"name": name, "label": label, "runs": runs, "decoder": "true",
          "data_name": "synthetic:banana", "num_epochs": 10,
          "num_importance_samples": 1000,
          "summary": aggregate.summarize(runs)}


def test_gap_share_is_relative_to_the_mean_gaussian_gap():
  configs = [_synthetic_config("none", "no flow", [0.9, 1.1]),
             _synthetic_config("planar4_global", "planar K=4 global",
                               [0.2, 0.4]),
             _synthetic_config("radial4_global", "radial K=4 global",
                               [1.5])]
  aggregate.add_gap_shares(configs)
  gaussian, planar, radial = (c["summary"]["gap_share"] for c in configs)
  assert gaussian["mean"] == pytest.approx(0.0, abs=1e-12)
  # 1 - gap / 1.0 at each seed: 0.8 and 0.6.
  assert planar == {"mean": pytest.approx(0.7), "n": 2,
                    "std": pytest.approx(np.sqrt(0.02))}
  assert radial["mean"] == pytest.approx(-0.5)  # Worse than the Gaussian.
  bad = [_synthetic_config("none", "no flow", [-0.1])]
  with pytest.raises(ValueError, match="gap must be positive"):
    aggregate.add_gap_shares(bad)
  real = [{"name": "none", "runs": {"0": {}}, "summary": {}}]
  aggregate.add_gap_shares(real)  # No exact gaps: nothing added.
  assert "gap_share" not in real[0]["summary"]


def test_synthetic_markdown_shows_gaps_and_shares():
  configs = [_synthetic_config("none", "no flow", [0.9, 1.1]),
             _synthetic_config("planar4_global", "planar K=4 global",
                               [0.2, 0.4])]
  aggregate.add_gap_shares(configs)
  results = {"sweep": "synthetic_true", "command": "cmd",
             "machine": {"cpu": "CPU X", "logical_cpus": 2, "gpus": 0,
                         "python": "3.11", "tensorflow": "2.21"},
             "configs": configs}
  text = markdown.markdown(results)
  assert "decoder fixed to the true network" in text
  assert ("| planar K=4 global | 0.300 ± 0.141 | 70 ± 14 | 0.030 ± 0.014 "
          "| 28.00 ± 0.00 | 27.70 ± 0.14 |") in text
  assert "| no flow | 1.000 ± 0.141 | 0 ± 14 |" in text
  configs.append(_synthetic_config("iaf4_global", "iaf K=4 global", [0.25]))
  aggregate.add_gap_shares(configs)
  one_seed = markdown.markdown(dict(results, configs=configs))
  assert "| iaf K=4 global | 0.250 | 75 | 0.025 | 28.00 | 27.75 |" in one_seed
  assert "Command: `cmd`" in text and "Machine: CPU X, 2 CPU cores" in text


class _CountingExact:
  """exact_log_likelihood of a fake data set that counts its calls."""

  def __init__(self):
    self.calls = 0

  def __call__(self, x):
    self.calls += 1
    return -np.arange(1.0, x.shape[0] + 1.0)  # -1, -2, ...: mean -(N+1)/2.


def test_exact_metrics_are_computed_once_and_cached(tmp_path):
  import dataclasses  # pylint: disable=g-import-not-at-top

  from vib_flows import data  # pylint: disable=g-import-not-at-top
  test = data.Split(np.zeros((4, 64), np.float32))
  exact = _CountingExact()
  info = data.DataInfo("synthetic:banana", (64,), None, None, "static")
  splits = data.DataSplits(test, test, test, info, exact)
  metrics = {"test_elbo": -4.0, "test_log_likelihood": -3.0}
  directory = tmp_path / "none" / "seed0"
  cache = run.exact_cache_path(str(directory), "synthetic:banana")
  assert cache == str(tmp_path / "exact_log_likelihood_banana.npy")
  for _ in range(2):
    got = run.exact_metrics(splits, metrics, cache)
    assert got == {"test_exact_log_likelihood": -2.5,
                   "test_exact_gap": 1.5, "test_exact_iw_gap": 0.5}
  assert exact.calls == 1
  other = dataclasses.replace(splits, test=data.Split(np.zeros((3, 64))))
  with pytest.raises(ValueError, match="delete it to recompute"):
    run.exact_metrics(other, metrics, cache)
  no_truth = dataclasses.replace(splits, exact_log_likelihood=None)
  assert run.exact_metrics(no_truth, metrics, cache) == {}


def test_protocol_grid_changes_one_field_of_the_book_protocol_at_a_time():
  entries = {e["name"]: e for e in grids.grid("digits_protocol")}
  book = grids.make_config(entries["book"], seed=0)
  assert (book.optimizer.name, book.train.batch_size, book.loss.warmup_steps,
          book.model.activation, book.train.num_epochs,
          book.train.early_stopping_patience, book.flow.num_flows) == (
              "adamax", 64, 0, "leaky_relu", 1000, 20, 0)
  def flat(config):
    return {f"{section}.{field}": value
            for section in ("optimizer", "train", "loss", "model", "flow")
            for field, value in config[section].items()}

  reference = flat(book)
  changed = {
      name: {k for k, v in flat(grids.make_config(entry, 0)).items()
             if v != reference[k]}
      for name, entry in entries.items() if name not in ("book", "old_default")}
  for name, fields in changed.items():
    parts = name.split("+")
    if len(parts) == 1:
      assert len(fields) == 1, (name, fields)
    else:  # A combination changes exactly the fields of its parts.
      assert fields == set().union(*(changed[p] for p in parts)), name
      assert len(fields) == len(parts), name
  defaults = {e["name"]: e for e in grids.grid("digits_defaults")}
  assert set(defaults) == {"book", "shipped", "shipped_no_flow"}
  # The published digits grids keep the standard normal prior they ran
  # with; the shipped rows follow configs/vae_digits.py.
  for sweep in ("vae_digits", "iaf_digits", "digits_protocol"):
    for entry in grids.grid(sweep):
      assert grids.make_config(entry, 0).model.prior == "standard_normal"
  assert grids.make_config(defaults["book"], 0).model.prior == (
      "standard_normal")
  shipped = grids.base("vae_digits")
  for name in ("shipped", "shipped_no_flow"):
    assert grids.make_config(defaults[name], 0).model.prior == (
        shipped.model.prior)


def test_prior_grid_changes_only_the_prior_and_the_flow():
  entries = {e["name"]: e for e in grids.grid("digits_priors")}
  shipped = grids.make_config({"base": "vae_digits", "overrides": {}}, 0)
  built = {name: grids.make_config(entry, 0) for name, entry in entries.items()}
  priors = {name: c.model.prior for name, c in built.items()}
  assert priors == {"standard_no_flow": "standard_normal",
                    "standard": "standard_normal",
                    "mixture_no_flow": "mixture", "mixture": "mixture",
                    "flow_prior_no_flow": "flow", "flow_prior": "flow"}
  for name, config in built.items():
    with_flow = not name.endswith("_no_flow")
    assert config.flow.num_flows == (shipped.flow.num_flows if with_flow
                                     else 0), name
    # The protocol is the shipped one.
    for field in ("optimizer", "train", "loss"):
      assert config[field].to_dict() == shipped[field].to_dict(), (name, field)
  assert built["mixture"].model.prior_components == 10


def test_protocols_are_ranked_by_the_lowest_validation_loss():
  runs = {"0": {"validation_loss": [99.0, 96.5, 97.0], "test_elbo": -90.0},
          "1": {"validation_loss": [98.0, 96.0, 96.1]}}
  summary = aggregate.summarize(runs)
  assert summary["best_validation_loss"]["mean"] == pytest.approx(96.25)
  assert aggregate.best_validation_loss({"test_elbo": -1.0}) is None
  results = {
      "sweep": "digits_protocol", "command": "cmd",
      "machine": {"cpu": "CPU X", "logical_cpus": 2, "gpus": 0,
                  "python": "3.11", "tensorflow": "2.21"},
      "configs": [{"name": "book", "label": "book protocol",
                   "num_importance_samples": 1000, "summary": summary,
                   "protocol_mismatches": [], "runs": runs}]}
  text = markdown.markdown(results)
  assert "| book protocol | 96.25 ± 0.35 | - | 90.00 | - |" in text


def test_set_flag_parses_values_and_reaches_every_run():
  settings = grids.parse_settings(
      ["data.name=idx:/data/mnist", "eval.fgsm_epsilons=(0.1, 0.3)",
       "train.ema_decay=0.999"])
  assert settings == {"data.name": "idx:/data/mnist",
                      "eval.fgsm_epsilons": (0.1, 0.3),
                      "train.ema_decay": 0.999}
  for entry in grids.grid("vib_mnist"):
    config = grids.make_config(entry, 0, settings=settings)
    assert config.data.name == "idx:/data/mnist"
    assert config.eval.fgsm_epsilons == (0.1, 0.3)
  with pytest.raises(ValueError, match="section.field=value"):
    grids.parse_settings(["ema_decay=0.9"])


def test_mnist_grids_follow_the_papers():
  vib = {e["name"]: grids.make_config(e, 0) for e in grids.grid("vib_mnist")}
  assert set(vib) == {grids.DETERMINISTIC, "vib", "vib_iaf2_amortized"}
  for config in vib.values():
    assert (config.model.latent_dim, config.model.encoder_hidden) == (
        256, (1024, 1024))
    assert config.data.validation_size == 0 and not config.train.keep_best
  assert vib["vib_iaf2_amortized"].flow.num_flows == 2
  vae = {e["name"]: grids.make_config(e, 0) for e in grids.grid("vae_mnist")}
  assert {"none", "planar10", "planar80"} <= set(vae)
  assert {vae["planar10"].flow.num_flows,
          vae["planar80"].flow.num_flows} == {10, 80}
  assert all(c.flow.amortized for n, c in vae.items() if n != "none")
  assert {c.flow.name for c in vae.values()} >= {
      "iaf", "real_nvp", "sylvester_orthogonal", "sylvester_householder",
      "sylvester_triangular"}


def test_attack_accuracies_are_added_to_finished_classifier_runs(tmp_path):
  only = [grids.DETERMINISTIC, "none_beta0.001"]
  run.run_sweep("vib_digits", str(tmp_path), seeds=1, only=only,
                base_config=_tiny_vib_config(), log=print)
  lines = []
  results = run.run_sweep(
      "vib_digits", str(tmp_path), seeds=1, only=only,
      base_config=_tiny_vib_config(), log=lines.append,
      settings={"eval.fgsm_epsilons": (0.0, 0.2)})
  assert all("filled in FGSM accuracy" in line for line in lines), lines
  for c in results["configs"]:
    metrics = c["runs"]["0"]
    # Epsilon 0 is the clean accuracy, by the same code path.
    assert metrics["test_fgsm_accuracy_eps0"] == pytest.approx(
        metrics["test_accuracy"], abs=1e-6)
    assert metrics["test_fgsm_accuracy_eps0.2"] < metrics["test_accuracy"]
  text = markdown.markdown(results)
  assert "fast gradient sign attack" in text and "eps = 0.2" in text
  assert "projected gradient descent" not in text
  assert os.path.getsize(tmp_path / "robustness.png") > 1000

  # PGD later: its budgets are added, FGSM's kept; then again with other
  # steps, which replace the first PGD accuracies.
  for steps in (2, 3):
    lines.clear()
    results = run.run_sweep(
        "vib_digits", str(tmp_path), seeds=1, only=only,
        base_config=_tiny_vib_config(), log=lines.append,
        settings={"eval.fgsm_epsilons": (0.0, 0.2),
                  "eval.pgd_epsilons": (0.0, 0.2), "eval.pgd_steps": steps})
    assert all("filled in PGD accuracy" in line for line in lines), lines
    for c in results["configs"]:
      metrics = c["runs"]["0"]
      assert metrics["test_pgd_steps"] == steps
      assert metrics["test_pgd_accuracy_eps0"] == pytest.approx(
          metrics["test_accuracy"], abs=1e-6)
      assert metrics["test_pgd_accuracy_eps0.2"] < metrics["test_accuracy"]
      assert "test_fgsm_accuracy_eps0.2" in metrics
  text = markdown.markdown(results)
  assert f"projected gradient descent (Madry et al. 2018; {steps} signed" in (
      text)
  assert text.count("| eps = 0 | eps = 0.2 |") == 2
  curves = aggregate.robustness_curves(results["configs"])
  assert sorted(c["linestyle"] for c in curves) == ["-", "-", "--", "--"]


def test_validation_curves_cover_the_epochs_every_seed_reached(tmp_path,
                                                               monkeypatch):
  configs = [{"label": "a", "runs": {
      "0": {"validation_loss": [3.0, 2.0, 1.5]},
      "1": {"validation_loss": [2.0, 1.0]}}},
             {"label": "no history", "runs": {"0": {}}}]
  curves = aggregate.validation_curves(configs)
  assert len(curves) == 1
  np.testing.assert_array_equal(curves[0]["x"], [1, 2])
  np.testing.assert_array_equal(curves[0]["y"], [[3.0, 2.0], [2.0, 1.0]])
  aggregate.save_sweep_figures("vae_mnist", str(tmp_path), configs)
  assert os.path.getsize(tmp_path / "validation_curves.png") > 1000
  # The y axis spans the later epochs of every seed (the first fall is
  # steep), with a 5% margin.
  assert plots.y_limits(curves, from_x=2) == pytest.approx((0.95, 2.05))
  assert plots.y_limits(curves, from_x=3) is None
  # A run that diverges later is drawn past the top: the axis ends at the
  # highest value of the first epoch shown (3.0), not at the spike.
  spiking = curves + [{"label": "b", "x": np.arange(1, 5),
                       "y": [[9.0, 3.0, 40.0, 2.5]]}]
  assert plots.y_limits(spiking, from_x=2) == pytest.approx((0.9, 3.1))
  figures = []
  monkeypatch.setattr(plots, "_save_figure",
                      lambda fig, path: figures.append(fig))
  plots.save_curves(spiking, str(tmp_path / "spiking.png"), "t", "x", "y",
                    y_from_x=2)
  ax = figures[0].axes[0]
  assert [t.get_text() for t in ax.get_legend().get_texts()] == [
      "a", "b (leaves the axis)"]
  assert ax.get_ylim() == pytest.approx((0.9, 3.1))


def test_a_finished_run_is_retested_with_the_sweeps_importance_samples(
    tmp_path, monkeypatch):
  vae_base = helpers.config("test", **{"train.num_epochs": 1})
  first = run.run_sweep("vae_digits", str(tmp_path), seeds=1, only=["none"],
                        importance_samples=2, base_config=vae_base, log=print)
  before = first["configs"][0]["runs"]["0"]
  lines = []
  # The re-test batches and chunks the test set as the sweep says.
  batching = []
  test_metrics = run.evaluate.test_metrics

  def spy(model, splits, config):
    batching.append((config.eval.batch_size,
                     config.eval.importance_chunk_size))
    return test_metrics(model, splits, config)

  monkeypatch.setattr(run.evaluate, "test_metrics", spy)
  vae_base.eval.batch_size = 7
  vae_base.eval.importance_chunk_size = 3
  again = run.run_sweep("vae_digits", str(tmp_path), seeds=1, only=["none"],
                        importance_samples=50, base_config=vae_base,
                        log=lines.append)
  after = again["configs"][0]["runs"]["0"]
  assert "test metrics with K = 50" in lines[0]
  assert batching == [(7, 3)]
  assert after["num_importance_samples"] == 50
  assert after["test_log_likelihood_k2"] == before["test_log_likelihood"]
  # Same weights and the same per-example noise for the first samples: the
  # ELBO moves by Monte Carlo noise only, the bound rises with K (Burda et
  # al. 2016) by far more than that noise on average.
  assert after["test_elbo"] == pytest.approx(before["test_elbo"], rel=0.05)
  assert after["test_log_likelihood"] > before["test_log_likelihood"]
  assert after["step"] == before["step"]  # Not retrained.
  # The table shows the earlier K's bound beside the new one.
  table = (tmp_path / "results.md").read_text()
  table_lines = table.splitlines()
  header = next(x for x in table_lines if x.startswith("| posterior"))
  row = next(x for x in table_lines if x.startswith("| no flow"))
  columns = [c.strip() for c in header.split("|")]
  cells = [c.strip() for c in row.split("|")]
  assert len(cells) == len(columns)
  assert cells[columns.index("-log p(x) (IW)")] == (
      f"{-after['test_log_likelihood']:.2f}")
  assert cells[columns.index("-log p(x), K = 2 before")] == (
      f"{-before['test_log_likelihood']:.2f}")


def test_train_elbo_scores_a_binary_draw_of_dynamically_binarized_images():
  """The train ELBO of a dynamically binarized run scores binary images.

  Dynamic binarization keeps grey training images; the diagnostics score one
  fixed Bernoulli draw of them (what the training pipeline feeds), not the
  grey values. Other representations are scored as stored.
  """
  grey = np.random.default_rng(0).uniform(size=(400, 64)).astype(np.float32)
  config = helpers.config("test")
  config.model.likelihood = "bernoulli"
  config.data.preprocess = "dynamic"
  scored = run._train_images_as_scored(grey, config)  # pylint: disable=protected-access
  assert set(np.unique(scored)) == {0.0, 1.0}
  # Each pixel is 1 with probability grey: the mean matches within 5 sigma.
  assert abs(scored.mean() - grey.mean()) < 5 * 0.5 / np.sqrt(grey.size)
  np.testing.assert_array_equal(
      scored, run._train_images_as_scored(grey, config))  # pylint: disable=protected-access
  config.data.preprocess = "static"
  assert run._train_images_as_scored(grey, config) is grey  # pylint: disable=protected-access


def test_attack_tables_name_the_seeds_each_row_averages():
  runs = {"0": {"test_fgsm_accuracy_eps0.1": 0.5,
                "test_pgd_accuracy_eps0.1": 0.2},
          "1": {"test_fgsm_accuracy_eps0.1": 0.7},
          "2": {"test_fgsm_accuracy_eps0.1": 0.6,
                "test_pgd_accuracy_eps0.1": 0.4}}
  configs = [{"label": "vib", "runs": runs,
              "summary": aggregate.summarize(runs)}]
  fgsm = markdown._attack_table(configs, "test_fgsm_accuracy_eps", "FGSM")
  pgd = markdown._attack_table(configs, "test_pgd_accuracy_eps", "PGD")
  assert fgsm[-1] == "| vib | 60.00 ± 10.00 | 0, 1, 2 |"
  assert pgd[-1] == "| vib | 30.00 ± 14.14 | 0, 2 |"
  assert pgd[-3] == "| model | eps = 0.1 | seeds |"


def test_the_pgd_table_says_how_many_random_starts_it_took():
  runs = {"0": {"test_pgd_accuracy_eps0.1": 0.2, "test_pgd_steps": 20,
                "test_pgd_restarts": 10}}
  configs = [{"label": "vib", "runs": runs,
              "summary": aggregate.summarize(runs)}]
  caption = markdown._attack_tables(configs)[1]
  assert "20 signed steps" in caption
  assert "from x and 9 random starts" in caption
  runs["0"]["test_pgd_restarts"] = 1
  configs[0]["summary"] = aggregate.summarize(runs)
  assert "random starts" not in markdown._attack_tables(configs)[1]
