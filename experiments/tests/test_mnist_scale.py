"""The MNIST-scale benchmark cases: FLOP model, hand-written steps, rows."""

import numpy as np
import pytest
import tensorflow as tf

from experiments import benchmark
from experiments.benchmarks import flops
from experiments.benchmarks import gemm
from experiments.benchmarks import handwritten_jax
from experiments.benchmarks import handwritten_spec
from experiments.benchmarks import handwritten_tf
from experiments.benchmarks import mnist
from experiments.benchmarks import mnist_eval
from vib_flows import training_step
from vib_flows.app import run_state

TINY = {"steps": 1, "repeats": 1, "warmup": 1, "mnist_tiny": True,
        "mnist_jax": True, "mnist_pipeline_examples": 64}


def test_flop_count_of_a_known_shape_list():
  # One dense layer [2, 3] x [3, 4]: forward, dW and dx, 2 * 2*3*4 each.
  assert flops.total_flops(flops.dense_step(2, 3, 4)) == 3 * 48
  assert flops.total_flops(flops.dense_step(2, 3, 4, input_grad=False)) == 96
  # The VIB of configs/vib_mnist.py at batch 100, by hand: layers 784x1024
  # (no input gradient: 2 products), 1024x1024, 1024x256 twice (loc,
  # scale), 256x10 (3 products each), 2 FLOPs per multiply-add.
  spec = mnist.spec_of(mnist.case_config("mnist_vib", True))
  gemms = mnist.step_gemms(spec, 100)
  macs = (784 * 1024 * 2 + 1024 * 1024 * 3 + 1024 * 256 * 3 * 2
          + 256 * 10 * 3)
  assert flops.total_flops(gemms) == 2 * 100 * macs == 1_266_380_800
  assert len(gemms) == 14
  # The generator of configs/vae_mnist.py, one forward pass per sample.
  assert mnist_eval.generator_flops_per_sample([40, 400, 784]) == 2 * (
      40 * 400 + 400 * 784) == 659_200


def test_gemm_runner_runs_exactly_the_listed_products():
  gemms = flops.dense_step(5, 3, 4)
  runner = gemm.TFGemms("g", gemms, 5, jit_compile=False)
  outputs = runner.fn(runner.operands)
  assert [tuple(o.shape) for o in outputs] == [(g.m, g.n) for g in gemms]
  assert runner.flops == flops.total_flops(gemms)
  assert np.isfinite(runner.step())


def _package_and_batch(name, tmp_path):
  config = mnist.case_config(name, False, tiny=True)
  data = mnist.step_splits(config)
  spec = mnist.spec_of(config, data.train.num_examples)
  state = run_state.build_state(config, str(tmp_path),
                                tf.distribute.get_strategy(), data)
  b = mnist.batch_size(config)
  batch = {"x": data.train.x[:b], "y": data.train.y[:b].astype(np.int32)}
  return state.model, spec, batch


@pytest.mark.parametrize("name", list(mnist.STEP_CASES))
def test_handwritten_losses_equal_the_packages_at_the_same_weights(
    name, tmp_path):
  pytest.importorskip("jax")
  model, spec, batch = _package_and_batch(name, tmp_path)
  b = batch["x"].shape[0]
  # The package's loss of step 0 (beta 1: the KL counts), and its noise.
  seed = training_step.step_seed(model.seed, tf.constant(0, tf.int64))
  loss, _ = training_step.scaled_loss(
      model, {k: tf.constant(v) for k, v in batch.items()}, 1.0, seed, b,
      training=False)
  eps = tf.random.stateless_normal([1, b, spec.latent_dim], seed)[0].numpy()
  params = mnist.params_from_package(model, spec)
  tf_step = handwritten_tf.HandwrittenTFStep("tf", spec, batch, False,
                                             params=params)
  jax_step = handwritten_jax.HandwrittenJAXStep("jax", spec, batch,
                                                params=params)
  expected = float(loss)
  assert tf_step.loss(eps, 1.0) == pytest.approx(expected, rel=1e-5)
  assert jax_step.loss(eps, 1.0) == pytest.approx(expected, rel=1e-5)
  # Other weights give another loss: the comparison can fail.
  other = handwritten_tf.HandwrittenTFStep(
      "other", spec, batch, False, params=handwritten_spec.init_params(spec, 1))
  assert other.loss(eps, 1.0) != pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("name", list(mnist.STEP_CASES))
def test_handwritten_steps_decrease_the_loss_on_a_fixed_batch(name):
  pytest.importorskip("jax")
  config = mnist.case_config(name, False, tiny=True)
  data = mnist.step_splits(config)
  spec = mnist.spec_of(config, data.train.num_examples)
  b = mnist.batch_size(config)
  batch = {"x": data.train.x[:b], "y": data.train.y[:b].astype(np.int32)}
  for step in (handwritten_tf.HandwrittenTFStep("tf", spec, batch, False),
               handwritten_jax.HandwrittenJAXStep("jax", spec, batch)):
    losses = [step.step() for _ in range(8)]
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), (step.name, losses)


def test_mnist_cases_are_a_group_outside_the_default_and_quick_runs():
  *_, names = benchmark.selected(["mnist"])
  assert names == list(mnist.CASES)
  assert benchmark.selected(["mnist_vib"])[-1] == ["mnist_vib"]
  assert "mnist" not in benchmark.DEFAULT_GROUPS
  assert not set(benchmark.QUICK["cases"]) & {"mnist", *mnist.CASES}


@pytest.mark.parametrize("name", list(mnist.STEP_CASES))
def test_each_step_case_runs_tiny(name, tmp_path):
  s = dict(TINY)
  if name != "mnist_vib":
    s["mnist_jax"] = False  # The message row instead of JAX's.
  rows = {r["case"]: r for r in mnist.model_rows(name, [False], s,
                                                 str(tmp_path))}
  package = rows[name]
  assert package["ratio_of"] == f"hand_tf_{name}" and package["ratio"] > 0
  assert package["gflops"] > 0 and 0 < package["roofline"]
  num_gemms = len(mnist.step_gemms(
      mnist.spec_of(mnist.case_config(name, False, tiny=True)), 16))
  assert rows[f"gemm_tf_{name}"]["note"].startswith(f"{num_gemms} GEMMs")
  if s["mnist_jax"] and handwritten_jax.available()[0]:
    assert rows[f"jax_{name}"]["examples_per_second"] > 0
    assert package["ratio_jax"] > 0
  else:
    assert rows[f"jax_{name}"]["note"].startswith("skipped")
  best = min(r["ms_per_step"] for c, r in rows.items()
             if c.startswith("gemm_"))
  assert max(r["roofline"] for c, r in rows.items()
             if c.startswith("gemm_")) == pytest.approx(1.0)
  assert package["roofline"] == pytest.approx(best / package["ms_per_step"])
  names = [t["name"] for t in mnist.targets(list(rows.values()))]
  assert any("hand-written TF" in n for n in names)
  assert any("roofline" in n for n in names) == (name == "mnist_vib")


def test_pipeline_case_runs_tiny(tmp_path):
  rows = {r["case"]: r for r in mnist.pipeline_rows(False, TINY,
                                                    str(tmp_path))}
  alone = rows["tf.data alone (dynamic binarization)"]
  assert alone["ratio"] > 0 and alone["ratio_of"] == "in-memory step"
  assert rows["mnist_vae_planar10 tf.data"]["ratio"] > 0
  names = [t["name"] for t in mnist.targets(list(rows.values()))]
  assert any("not the bottleneck" in n for n in names)


def test_evaluation_case_runs_tiny():
  r = mnist_eval.run_in_process(20, 4, repeats=1, tiny=True)
  assert r["finite"] and r["seconds"] > 0 and r["bound_seconds"] > 0
  # 4 images x 20 samples of the tiny decoder 8-32-784.
  assert r["generator_flops"] == 4 * 20 * 2 * (8 * 32 + 32 * 784)
  assert r["seconds_test_set"] == pytest.approx(r["seconds"] * 10_000 / 4)


def test_targets_judge_the_goals():
  rows = [
      {"group": "mnist", "case": "mnist_vib", "xla": True, "ratio": 0.96,
       "ratio_jax": 0.9, "roofline": 0.71},
      {"group": "mnist", "case": "mnist iwae K=5000", "xla": None,
       "ratio": 1.2, "ratio_of": "peak at K=500", "roofline": 1 / 1.4},
  ]
  met = {t["name"]: t["met"] for t in mnist.targets(rows)}
  assert met == {
      "mnist_vib / hand-written TF throughput, XLA on": True,
      "mnist_vib / hand-written JAX throughput, XLA on": False,
      "mnist_vib step / GEMM roofline, XLA on": True,
      "mnist iwae K=5000: time / generator FLOP bound": True,
      "mnist iwae K=5000 peak memory / peak at K=500": False}
