"""The modes of a run (`vib_flows.app.modes`): train and evaluate, evaluate.

Whole runs in this process: a VAE run writes its metrics, checkpoints,
summaries and pictures; a VIB run is far above chance; a run resumes from
its saved step; mixed precision keeps the densities in float32; bad data
fail before the workdir is written; --mode=eval records the eval fields
that differ from the run's. Runs as processes, signalled, killed or on
several workers, are tests/app/test_end_to_end.py's.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from vib_flows.app import modes
from vib_flows.app import run_state

VAE_KEYS = {"test_elbo", "test_log_likelihood", "test_kl",
            "test_reconstruction"}
VIB_KEYS = {"test_accuracy", "test_cross_entropy", "test_kl", "test_izy_lower"}


@pytest.mark.slow
def test_vae_run_writes_everything(tmp_path):
  config = helpers.config("vae_digits", **{"export.enabled": False})
  config.train.num_epochs = 3
  config.eval.num_importance_samples = 200
  config.eval.importance_chunk_size = 64
  metrics = modes.train_and_evaluate(config, str(tmp_path))
  written = helpers.read_json(tmp_path / "metrics.json")
  assert VAE_KEYS <= set(written)
  assert written == pytest.approx(metrics)
  assert written["test_log_likelihood"] >= written["test_elbo"]
  assert np.isfinite(written["test_elbo"]) and written["test_kl"] > 0
  saved = helpers.read_json(tmp_path / "config.json")
  assert saved["model"]["latent_dim"] == 16 and saved["flow"]["num_flows"] == 4
  latest = tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))
  steps = 3 * (1000 // config.train.batch_size)  # 1000 training images.
  assert latest.endswith(f"-{steps}")  # The end of the run is always saved.
  names = [name for name, _ in tf.train.list_variables(latest)]
  assert any(name.startswith("best_weights/") for name in names)
  assert os.listdir(tmp_path / "tensorboard")
  for png in ("reconstructions.png", "samples.png"):
    assert (tmp_path / png).stat().st_size > 1000


@pytest.mark.slow
def test_vib_run_is_far_above_chance(tmp_path):
  config = helpers.config("vib_digits", **{"export.enabled": False})
  config.train.num_epochs = 5
  metrics = modes.train_and_evaluate(config, str(tmp_path))
  assert VIB_KEYS <= set(helpers.read_json(tmp_path / "metrics.json"))
  assert metrics["test_accuracy"] > 0.8  # chance is 0.1
  assert metrics["test_izy_lower"] <= metrics["label_entropy"]
  assert metrics["test_kl"] > 0


@pytest.mark.slow
def test_resume_continues_from_the_saved_step(tmp_path):
  config = helpers.run_config()
  config.train.num_epochs = 1
  first = modes.train_and_evaluate(config, str(tmp_path))
  assert first["step"] == 10 and first["steps_this_run"] == 10
  config.train.num_epochs = 2
  second = modes.train_and_evaluate(config, str(tmp_path))
  assert second["step"] == 20 and second["steps_this_run"] == 10


@pytest.mark.slow
def test_mixed_precision_run_keeps_densities_in_float32(tmp_path):
  config = helpers.run_config()
  config.runtime.mixed_precision = True
  config.train.num_epochs = 1
  try:
    metrics = modes.train_and_evaluate(config, str(tmp_path))
    state = run_state.build_state(config, str(tmp_path))
    assert state.model.encoder.hidden_layers[0].compute_dtype == "float16"
    batch = {"x": tf.constant(state.splits.test.x[:4])}
    _, terms = state.model.per_example_loss(batch, 1.0, tf.constant([0, 1]))
    assert all(t.dtype == tf.float32 for t in terms.values())
  finally:
    tf.keras.mixed_precision.set_global_policy("float32")
    import keras  # pylint: disable=g-import-not-at-top
    keras.mixed_precision.set_global_policy("float32")
  assert np.isfinite(metrics["test_elbo"]) and np.isfinite(
      metrics["test_log_likelihood"])
  assert metrics["test_log_likelihood"] >= metrics["test_elbo"]


def test_bad_data_fails_before_the_workdir_is_written(tmp_path):
  bad = tmp_path / "bad.npz"
  np.savez(bad, x_train=np.full((10, 64), 20.0), y_train=np.zeros(10),
           x_test=np.zeros((5, 64)), y_test=np.zeros(5))
  workdir = tmp_path / "run"
  config = helpers.config("test", **{"data.name": f"npz:{bad}"})
  with pytest.raises(ValueError, match=r"x_train has values outside 0\.\.16"):
    modes.train_and_evaluate(config, str(workdir))
  assert not (workdir / "config.json").exists()


@pytest.mark.slow
def test_eval_records_the_eval_fields_that_differ_from_the_run(
    trained_run, tmp_path):
  workdir, _ = trained_run
  result = helpers.run_main([
      "--config=configs/test.py", f"--workdir={workdir}", "--mode=eval",
      *helpers.TINY_RUN_FLAGS,
      "--config.eval.num_importance_samples=3"], check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "eval.num_importance_samples (2 in the run, 3 here)" in result.stderr
  metrics = json.loads((workdir / "metrics.json").read_text())
  assert metrics["num_importance_samples"] == 3
  assert metrics["eval_config"] == {
      "eval.num_importance_samples": {"run": 2, "this_eval": 3}}
