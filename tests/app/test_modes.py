"""End-to-end tests of the training application."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tests import warm_processes
from vib_flows import data as data_lib
from vib_flows import training_step
from vib_flows.app import batch_sources
from vib_flows.app import distributed_steps
from vib_flows.app import epoch_loop
from vib_flows.app import faults
from vib_flows.app import modes
from vib_flows.app import run_state
from vib_flows.app import workdir as workdir_lib

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
  config = helpers.config("test", **{"export.enabled": False})
  config.train.num_epochs = 1
  first = modes.train_and_evaluate(config, str(tmp_path))
  assert first["step"] == 10 and first["steps_this_run"] == 10
  config.train.num_epochs = 2
  second = modes.train_and_evaluate(config, str(tmp_path))
  assert second["step"] == 20 and second["steps_this_run"] == 10


def test_other_config_in_same_workdir_is_refused(tmp_path):
  config = helpers.config("test", **{"export.enabled": False})
  workdir_lib.prepare(str(tmp_path), config)  # A run's start: config.json.
  other = helpers.config("test", **{"export.enabled": False})
  other.model.latent_dim = 3
  with pytest.raises(faults.ConfigError,
                     match=r"different config: model.latent_dim \(4 in the "
                     r"run, 3 here\)"):
    modes.train_and_evaluate(other, str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == ["config.json"]  # No lock left.
  other.train.overwrite = True
  other.train.num_epochs = 1
  other.eval.num_importance_samples = 2
  other.eval.importance_chunk_size = 2
  modes.train_and_evaluate(other, str(tmp_path))
  assert helpers.read_json(tmp_path / "config.json")["model"]["latent_dim"] == 3


@pytest.mark.slow
def test_command_line_override_reaches_the_model(tmp_path):
  helpers.run_main([
      "--config=configs/test.py", f"--workdir={tmp_path}",
      "--config.model.latent_dim=3", "--config.train.num_epochs=1",
      "--config.export.enabled=False",
  ])
  assert helpers.read_json(tmp_path / "config.json")["model"]["latent_dim"] == 3
  shapes = dict(tf.train.list_variables(str(tmp_path / "checkpoints")))
  # Some variable of the model has the overridden latent size 3 as an axis.
  assert any(3 in shape for shape in shapes.values())
  assert not any(4 in shape for name, shape in shapes.items() if "model" in name
                 and len(shape) == 1 and shape[0] == 4)
  metrics = helpers.read_json(tmp_path / "metrics.json")
  assert VAE_KEYS <= set(metrics)


def test_unknown_config_field_is_refused(tmp_path):
  result = helpers.run_main(
      ["--config=configs/test.py", f"--workdir={tmp_path}",
       "--config.model.latent_dims=3"], check=False,
  )
  assert result.returncode != 0
  assert "latent_dims" in result.stderr


@pytest.mark.slow
def test_mirrored_matches_default(tmp_path):
  out = warm_processes.run(
      [sys.executable, "tests/scripts/strategy_trajectories.py", helpers.ROOT],
      cwd=helpers.ROOT, env=helpers.env(), capture_output=True, text=True,
      timeout=600,
  )
  assert out.returncode == 0, out.stderr[-4000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["default"]["replicas"] == 1
  assert result["mirrored"]["replicas"] == 2
  assert result["mirrored"]["steps"] == result["default"]["steps"]
  default, mirrored = (np.array(result[k]["loss"])
                       for k in ("default", "mirrored"))
  # Same data order and global batch; only the posterior noise differs per
  # replica, so the per-epoch losses agree to within Monte Carlo noise (<1%)
  # while training moves them by far more.
  np.testing.assert_allclose(mirrored, default, rtol=1e-2)
  assert default[0] - default[-1] > 10 * np.max(np.abs(mirrored - default))


def test_clipnorm_clips_the_global_batch_gradient_by_its_global_norm():
  # SGD with learning rate 1: the update is -clip(g, c), of global norm c
  # when ||g|| > c. Clipping each variable on its own (Keras' clipnorm) would
  # give norm c for every variable, and clipping each replica's share before
  # the all-reduce up to 2c for two replicas.
  clipnorm = 1e-3
  out = warm_processes.run(
      [sys.executable, "tests/scripts/clipped_update.py", helpers.ROOT,
       str(clipnorm)],
      cwd=helpers.ROOT, env=helpers.env(), capture_output=True, text=True,
      timeout=600,
  )
  assert out.returncode == 0, out.stderr[-4000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["mirrored"]["replicas"] == 2
  for strategy_name in ("default", "mirrored"):
    r = result[strategy_name]
    assert r["update_norm"] == pytest.approx(clipnorm, rel=1e-4), r
    assert r["largest_norm"] < 0.999 * clipnorm, r


def _final_weights(workdir):
  """{name: array} of the model's variables in the run's latest checkpoint."""
  path = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
  reader = tf.train.load_checkpoint(path)
  return {name: reader.get_tensor(name)
          for name, _ in tf.train.list_variables(path)
          if name.startswith(("model/", "best_weights/"))}


def test_trainer_step_uses_the_models_beta_warmup_and_seed(tmp_path):
  """The step weights the KL by the model's beta and warm-up, not config's.

  The config says beta = 1 without warm-up and seed 0; the model is changed
  to beta = 40, a warm-up of 4 steps and seed 12 before the step function
  is made. Steps 0 and 1 must give the terms of `per_example_loss` at
  beta_t = 40 * t / 4 with the noise of `step_seed(12, t)`.
  """
  config = helpers.config("test", **{"export.enabled": False})
  config.loss.beta, config.loss.warmup_steps, config.seed = 1.0, 0, 0
  state = run_state.build_state(config, str(tmp_path))
  model = state.model
  model.beta, model.warmup_steps, model.seed = 40.0, 4, 12
  step_fn = distributed_steps.make_train_step(state)
  batch = {"x": tf.constant(state.splits.train.x[:config.train.batch_size])}
  for step, beta in ((0, 0.0), (1, 10.0)):
    assert int(state.optimizer.iterations.numpy()) == step
    seed = training_step.step_seed(model.seed, tf.constant(step, tf.int64))
    _, terms = model.per_example_loss(batch, beta, seed, training=True)
    expected = {k: float(tf.reduce_sum(v)) for k, v in terms.items()}
    # The config's beta (1, no warm-up) and seed give other numbers.
    config_seed = training_step.step_seed(config.seed,
                                          tf.constant(step, tf.int64))
    _, config_terms = model.per_example_loss(batch, config.loss.beta,
                                             config_seed, training=True)
    config_loss = float(tf.reduce_sum(config_terms["loss"]))
    sums = {k: float(v) for k, v in step_fn(batch).items()}
    count = sums["count"]
    assert count == config.train.batch_size
    assert sums["beta"] / count == pytest.approx(beta)
    for k in model.term_names:
      assert sums[k] == pytest.approx(expected[k], rel=1e-5, abs=1e-3), k
    assert sums["loss"] == pytest.approx(
        -sums["reconstruction"] + beta * sums["kl"], rel=1e-5)
    assert sums["beta"] / count != pytest.approx(config.loss.beta)
    assert sums["loss"] != pytest.approx(config_loss, rel=1e-4)


def test_steps_per_call_and_checkpoints_do_not_change_the_run(tmp_path):
  """One step per call vs 7 (calls cut at epoch ends and mid-epoch saves)."""
  runs = {}
  for steps_per_call, every_steps in ((1, 0), (7, 4)):
    config = helpers.config("test", **{"export.enabled": False})
    config.train.num_epochs = 3
    config.train.steps_per_call = steps_per_call
    config.train.checkpoint_every_steps = every_steps
    config.train.checkpoint_every_epochs = 2
    workdir = str(tmp_path / f"spc{steps_per_call}")
    state = run_state.build_state(config, workdir)
    history = epoch_loop.train(state, verbose=False)
    assert [h["step"] for h in history] == [10, 20, 30]
    runs[steps_per_call] = (history, _final_weights(workdir))
    trained = [np.asarray(w) for w in state.model.weights]
  (h1, w1), (h7, w7) = runs[1], runs[7]
  assert w1.keys() == w7.keys() and len(w1) > 4
  for name in w1:
    np.testing.assert_allclose(w7[name], w1[name], rtol=1e-5, atol=1e-6,
                               err_msg=name)
  for a, b in zip(h1, h7):
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
  # Training moved the weights: the comparison is not of two initial states.
  init = run_state.build_state(helpers.config("test"), str(tmp_path / "fresh"))
  moved = [np.max(np.abs(np.asarray(v) - w))
           for v, w in zip(init.model.weights, trained)]
  assert max(moved) > 1e-2


def test_batches_gathered_in_the_loop_train_as_the_tf_data_iterator(
    tmp_path, monkeypatch):
  """One replica gathers its batches in the loop; the same run as tf.data."""
  runs = {}
  for gathers in (True, False):
    if not gathers:  # The path of several replicas, with one replica.
      monkeypatch.setattr(data_lib, "gathers_in_graph",
                          lambda *args, **kwargs: False)
    config = helpers.config("test", **{"export.enabled": False})
    config.train.num_epochs = 2
    config.train.steps_per_call = 3  # Calls that start mid-epoch.
    workdir = str(tmp_path / f"gathers_{gathers}")
    state = run_state.build_state(config, workdir)
    steps = batch_sources.batch_source(state)
    assert steps.gathers == gathers
    history = epoch_loop.train(state, verbose=False)
    runs[gathers] = (history, _final_weights(workdir))
  (h_gather, w_gather), (h_data, w_data) = runs[True], runs[False]
  assert w_gather.keys() == w_data.keys()
  for name in w_gather:
    np.testing.assert_allclose(w_gather[name], w_data[name], rtol=1e-6,
                               atol=1e-7, err_msg=name)
  for a, b in zip(h_gather, h_data):
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)


def _logged_scalars(workdir):
  """{(tag, step): value} of the scalars in the run's TensorBoard events."""
  logged = {}
  for path in tf.io.gfile.glob(os.path.join(workdir, "tensorboard", "*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == "scalars":
          logged[(value.tag, event.step)] = float(
              tf.make_ndarray(value.tensor))
  return logged


def test_every_epochs_metrics_reach_tensorboard(tmp_path):
  config = helpers.config("test", **{"export.enabled": False})
  config.train.num_epochs = 2
  state = run_state.build_state(config, str(tmp_path))
  history = epoch_loop.train(state, verbose=False)
  logged = _logged_scalars(str(tmp_path))
  for epoch in history:
    step = epoch["step"]
    for name in ("loss", "kl", "examples_per_second"):
      assert logged[(f"train/{name}", step)] == pytest.approx(
          epoch[name], rel=1e-6), name
    assert logged[("validation/loss", step)] == pytest.approx(
        epoch["validation_loss"], rel=1e-6)
  assert {tag for tag, _ in logged} >= {"validation/kl", "train/beta"}


def test_best_step_is_the_step_of_the_best_weights_and_is_saved(tmp_path):
  config = helpers.config("test", **{"export.enabled": False})
  state = run_state.build_state(config, str(tmp_path))
  assert state.best_step == state.step == 0  # No best weights yet.
  state.optimizer.iterations.assign(5)
  state.best_val_loss.assign(1.0)
  state.keep_best()
  state.optimizer.iterations.assign(9)
  assert state.best_step == 5 and state.step == 9
  state.manager.save(checkpoint_number=9)
  resumed = run_state.build_state(config, str(tmp_path))
  assert (resumed.best_step, resumed.step) == (5, 9)


def _local_cluster(num_workers):
  """A TF_CONFIG cluster of `num_workers` workers on free localhost ports."""
  return {"worker": [f"localhost:{p}" for p in helpers.free_ports(num_workers)]}


def _run_workers(cluster, arguments):
  """Runs one Python process per worker, each with its TF_CONFIG.

  Args:
    cluster: the TF_CONFIG cluster.
    arguments: worker index -> the arguments after `python`.

  Returns:
    Each worker's stderr, after asserting that every worker exited 0.
  """
  procs = []
  for index in range(len(cluster["worker"])):
    child = helpers.env()
    child["TF_CONFIG"] = json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": index}})
    procs.append(warm_processes.popen(
        [sys.executable, *arguments(index)], cwd=helpers.ROOT, env=child,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  results = []
  for proc in procs:
    try:
      _, err = proc.communicate(timeout=600)
    finally:
      proc.kill()
    results.append((proc.returncode, err))
  for index, (code, err) in enumerate(results):
    assert code == 0, f"worker {index}: {err[-4000:]}"
  return [err for _, err in results]


@pytest.mark.slow
def test_multi_worker_mirrored_two_processes(tmp_path):
  _run_workers(_local_cluster(2), lambda index: [
      "tests/scripts/multi_worker.py", helpers.ROOT, str(tmp_path / "run"),
      str(tmp_path / f"w{index}.npz")])
  w0, w1 = (np.load(tmp_path / f"w{i}.npz") for i in range(2))
  assert int(w0["step"]) == int(w1["step"]) == 2 * 10
  for key in w0.files:
    np.testing.assert_array_equal(w0[key], w1[key])
  # Only the chief (worker 0) wrote checkpoints into the workdir.
  assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))


@pytest.mark.slow
def test_mixed_precision_run_keeps_densities_in_float32(tmp_path):
  config = helpers.config("test", **{"export.enabled": False})
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


def test_console_script_is_installed():
  script = os.path.join(os.path.dirname(sys.executable), "vib-flows")
  # absl's help exits with status 1 by design; the flags tell it is ours
  # (listed under the module that defines them).
  result = subprocess.run([script, "--helpfull"], capture_output=True,
                          text=True, env=helpers.env(), timeout=120)
  assert "vib_flows.app.cli:" in result.stdout
  assert "--workdir" in result.stdout and "--mode" in result.stdout
