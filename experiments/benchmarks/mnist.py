"""MNIST-scale cases: the package's step against hand-written TF and JAX.

Cases (`CASES`, group "mnist"), batch 100 of MNIST-shaped synthetic data
(784 inputs; the numbers measure speed only):
  mnist_vib            the VIB of Alemi et al. 2017 exactly as
                       configs/vib_mnist.py trains it: 784-1024-1024, K = 256,
                       10 classes, scale softplus(a - 5), inputs 2x - 1, Adam
                       beta_1 0.5 with its staircase decay, weight average
                       (ema 0.999)
  mnist_vae_planar10   the MLP VAE of Rezende & Mohamed 2015 as
                       configs/vae_mnist.py: 784-400-40, decoder 40-400-784,
                       Bernoulli, amortized flows from a 64-wide context, KL
                       warm-up; with K = 10 planar maps
  mnist_vae_sylvester  the same with SYLVESTER_FLOWS amortized orthogonal
                       Sylvester flows (M = d = 40)
For each, in one process, interleaved repeat by repeat (`timing`):
  <case> [xla on|off]          vib_flows' step (`package_step.PackageStep`:
                               `run_state.build_state` +
                               `distributed_steps.make_train_step`)
  hand_tf_<case> [xla ...]     the hand-written TensorFlow step
                               (`handwritten_tf`)
  jax_<case>                   the hand-written JAX step (`handwritten_jax`;
                               a message row where JAX is missing)
  gemm_tf_<case> [xla ...]     the step's GEMMs alone by tf.matmul (`gemm`)
  gemm_jax_<case>              the same by jnp.dot
Each row has its GFLOP/s (the step's GEMM FLOPs, `flops`, over its time)
and "roofline": the fastest GEMM row's time over this row's time, i.e. the
fraction of the machine's GEMM throughput for these shapes the row reaches.
  mnist_pipeline       configs/vae_mnist.py's input pipeline (dynamic
                       binarization, `data.make_dataset_fn`) over 50 000
                       grey-value images: alone (batches pulled, nothing
                       trained), feeding the planar step, and the same step
                       on one in-memory batch
  mnist_iw5000         `model.log_likelihood` with K = 5000 as the package's
                       evaluation runs it (`mnist_eval`), on a subset of the
                       test images, extrapolated linearly to 10 000, against
                       the generator's FLOPs at the measured GEMM rate
"""

import os

from absl import logging
import numpy as np

import experiments
from experiments.benchmarks import flops
from experiments.benchmarks import gemm
from experiments.benchmarks import handwritten_jax
from experiments.benchmarks import handwritten_spec
from experiments.benchmarks import handwritten_tf
from experiments.benchmarks import package_step
from experiments.benchmarks import runs
from experiments.benchmarks import synthetic
from experiments.benchmarks import timing

BATCH_SIZE = 100
SYLVESTER_FLOWS = 4
TEST_IMAGES = 10_000
# Training examples behind the step cases: only the staircase decay's
# steps per epoch depend on it (the batch is the first BATCH_SIZE).
STEP_TRAIN_EXAMPLES = 1000

# name -> (config file, flow name, number of flows).
STEP_CASES = {
    "mnist_vib": ("vib_mnist", "", 0),
    "mnist_vae_planar10": ("vae_mnist", "planar", 10),
    "mnist_vae_sylvester": ("vae_mnist", "sylvester_orthogonal",
                            SYLVESTER_FLOWS),
}
PIPELINE_CASE = "mnist_pipeline"
EVAL_CASE = "mnist_iw5000"
CASES = (*STEP_CASES, PIPELINE_CASE, EVAL_CASE)
# The model whose evaluation and pipeline are timed.
EVAL_MODEL = "mnist_vae_planar10"

# Goals of the issue "Speed where users feel it".
PACKAGE_OVER_HAND_TF = 0.95
PACKAGE_OVER_JAX = 1.0
VIB_ROOFLINE = 0.70
EVAL_OVER_BOUND = 1.5
EVAL_MEMORY_GROWTH = 1.1


def case_config(name, jit_compile, tiny=False):
  """The config of step case `name` (configs/<file>.py, flows set).

  Args:
    name: a key of `STEP_CASES`.
    jit_compile: train.jit_compile.
    tiny: narrow networks and batch 16 (tests: seconds, not the paper's
      shapes).
  """
  from vib_flows.app import config_files  # pylint: disable=g-import-not-at-top
  file_name, flow_name, num_flows = STEP_CASES[name]
  config = config_files.load(experiments.config_path(file_name))
  config.data.name = "synthetic_mnist"
  if flow_name:
    config.flow.name = flow_name
    config.flow.num_flows = num_flows
  config.train.jit_compile = bool(jit_compile)
  config.export.enabled = False
  if tiny:
    m = config.model
    m.encoder_hidden = tuple(32 for _ in m.encoder_hidden)
    m.decoder_hidden = tuple(32 for _ in m.decoder_hidden)
    m.latent_dim = 8
    m.context_dim = 8
    config.flow.num_flows = min(int(config.flow.num_flows), 2)
    config.train.batch_size = 16
  return config


def batch_size(config):
  """train.batch_size of a config."""
  return int(config.train.batch_size)


def spec_of(config, train_examples=STEP_TRAIN_EXAMPLES):
  """The `handwritten_spec.Spec` of a step case's config (`from_config`)."""
  return handwritten_spec.from_config(config, synthetic.INPUT_DIM,
                                      synthetic.NUM_CLASSES, train_examples)


def splits(num_train, binary, preprocess, seed=0, num_test=BATCH_SIZE):
  """MNIST-shaped `DataSplits`: about 80% black pixels, the rest grey.

  Args:
    num_train: training examples.
    binary: draw the pixels once as Bernoulli(grey) (what a binarized
      batch holds) instead of keeping the grey values.
    preprocess: the `DataInfo.preprocess` to record ("dynamic", "scale").
    seed: the draws.
    num_test: test (and validation) examples.
  """
  from vib_flows import data as data_lib  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  d = synthetic.INPUT_DIM

  def split(n):
    grey = rng.random((n, d), dtype=np.float32)
    x = np.where(rng.random((n, d)) < 0.8, 0.0, grey)
    if binary:
      x = rng.random((n, d)) < x
    y = rng.integers(0, synthetic.NUM_CLASSES, size=n, dtype=np.int64)
    return data_lib.Split(x.astype(np.float32), y)

  test = split(num_test)
  return synthetic.data_splits(split(int(num_train)), test, preprocess)


def step_splits(config, num_train=STEP_TRAIN_EXAMPLES):
  """The splits of a step case: binary for the VAE, grey for the VIB."""
  vae = str(config.model.kind) == "vae"
  return splits(max(num_train, batch_size(config)), binary=vae,
                preprocess=str(config.data.preprocess))


def step_gemms(spec, rows):
  """The GEMMs of one training step of `spec` on `rows` examples."""
  return flops.step_gemms(spec.dense_layers(), rows)


# ------------------------------------------------------------------ weights
def params_from_package(model, spec):
  """The package model's weights as `handwritten_spec` names -> arrays.

  For the tests: the hand-written losses at the package's weights.
  """
  params = {}

  def dense(name, layer):
    params[f"{name}/kernel"] = np.asarray(layer.kernel)
    params[f"{name}/bias"] = np.asarray(layer.bias)

  encoder = model.encoder
  for i, layer in enumerate(encoder.hidden_layers):
    dense(f"enc{i}", layer)
  dense("loc", encoder.loc_head)
  dense("scale", encoder.scale_head)
  if spec.has_flows:
    dense("context", encoder.context_head)
    layers = [layer for layer in model.flow.flows if layer.weights]
    for i, layer in enumerate(layers):
      prefix = "flow" if spec.flow == "planar" else f"flow{i}"
      for weight in layer.weights:
        short = weight.name.replace("_context_kernel", "_kernel")
        params[f"{prefix}/{short}"] = np.asarray(weight)
  for i, layer in enumerate(model.generator.hidden_layers):
    dense(f"gen{i}", layer)
  dense("out", model.generator.head)
  expected = handwritten_spec.init_params(spec)
  if set(params) != set(expected):
    raise ValueError(f"Unmapped weights: {set(params) ^ set(expected)}")
  return {k: params[k].reshape(expected[k].shape) for k in expected}


# --------------------------------------------------------------------- rows
def _jax_status(s):
  if not s.get("mnist_jax", True):
    return False, "JAX rows off (--nomnist_jax)"
  return handwritten_jax.available()


def _label(name, xla):
  return name if xla is None else runs._label(name, xla)  # pylint: disable=protected-access


def _message_row(case, note):
  return {"group": "mnist", "case": case, "xla": None,
          "examples_per_second": None, "ms_per_step": None, "spread": None,
          "ratio": None, "ratio_of": "", "peak_mib": None, "note": note}


def model_rows(name, modes, s, workdir):
  """Package, hand-written TF and JAX, and GEMM rows of step case `name`."""
  tiny = bool(s.get("mnist_tiny", False))
  configs = {xla: case_config(name, xla, tiny) for xla in modes}
  config = configs[modes[0]]
  data = step_splits(config)
  rows_per_step = batch_size(config)
  batch = {"x": data.train.x[:rows_per_step],
           "y": data.train.y[:rows_per_step].astype(np.int32)}
  spec = spec_of(config, data.train.num_examples)
  gemms = step_gemms(spec, rows_per_step)
  runners, meta = [], {}

  def add(runner, group, case, xla):
    runners.append(runner)
    meta[runner.name] = (group, case, xla)

  for xla in modes:
    logging.info("Building %s", _label(name, xla))
    add(package_step.PackageStep(
        _label(name, xla), configs[xla], data,
        os.path.join(workdir, f"{name}_{int(xla)}")), "mnist", name, xla)
    add(handwritten_tf.HandwrittenTFStep(
        _label(f"hand_tf_{name}", xla), spec, batch, xla), "mnist",
        f"hand_tf_{name}", xla)
    add(gemm.TFGemms(_label(f"gemm_tf_{name}", xla), gemms, rows_per_step,
                     xla), "mnist", f"gemm_tf_{name}", xla)
  jax_ok, why = _jax_status(s)
  if jax_ok:
    add(handwritten_jax.HandwrittenJAXStep(f"jax_{name}", spec, batch),
        "mnist", f"jax_{name}", None)
    add(gemm.JAXGemms(f"gemm_jax_{name}", gemms, rows_per_step), "mnist",
        f"gemm_jax_{name}", None)
  logging.info("Timing %d runners of %s", len(runners), name)
  timings = timing.measure(runners, s["steps"], s["repeats"], s["warmup"])
  total = flops.total_flops(gemms)
  rows = {}
  for label, t in timings.items():
    group, case, xla = meta[label]
    rows[label] = runs._row(group, case, xla, t, flops=total,  # pylint: disable=protected-access
                            gflops=total / (t.ms_per_step * 1e-3) / 1e9)
  gemm_labels = [lb for lb in rows if rows[lb]["case"].startswith("gemm_")]
  best = min(gemm_labels, key=lambda lb: rows[lb]["ms_per_step"])
  for row in rows.values():
    row["roofline"] = rows[best]["ms_per_step"] / row["ms_per_step"]
    row["roofline_of"] = best
  for xla in modes:
    package = rows[_label(name, xla)]
    hand = rows[_label(f"hand_tf_{name}", xla)]
    package["ratio"] = (package["examples_per_second"]
                        / hand["examples_per_second"])
    package["ratio_of"] = f"hand_tf_{name}"
    notes = []
    if jax_ok:
      jax_row = rows[f"jax_{name}"]
      for row in (package, hand):
        row["ratio_jax"] = (row["examples_per_second"]
                            / jax_row["examples_per_second"])
        row["note"] = f"/ JAX {row['ratio_jax']:.3f}"
      notes.append(package["note"])
    if xla and _label(name, False) in rows:
      speedup = package["examples_per_second"] / rows[_label(name, False)][
          "examples_per_second"]
      package["xla_speedup"] = speedup
      notes.append(f"XLA on/off {speedup:.2f}x")
    package["note"] = "; ".join(notes)
  gemm_note = (f"{len(gemms)} GEMMs, {total / 1e9:.3f} GFLOP per step; "
               f"roofline = {best}")
  for label in gemm_labels:
    rows[label]["note"] = gemm_note
  out = list(rows.values())
  if not jax_ok:
    out.append(_message_row(f"jax_{name}", f"skipped: {why}"))
  return out


def pipeline_rows(xla, s, workdir):
  """The VAE's pipeline alone, feeding the step, and the step in memory."""
  tiny = bool(s.get("mnist_tiny", False))
  config = case_config(EVAL_MODEL, xla, tiny)
  data = splits(s["mnist_pipeline_examples"], binary=False,
                preprocess="dynamic", seed=1)
  inner = package_step.PackageStep(
      f"{EVAL_MODEL} in-memory", config, data,
      os.path.join(workdir, "mnist_pipeline"))
  fed = package_step.PipelineFedStep(f"{EVAL_MODEL} tf.data", inner)
  alone = package_step.PipelineAlone(
      "tf.data alone (dynamic binarization)", inner)
  timings = timing.measure([inner, fed, alone], s["steps"], s["repeats"],
                           s["warmup"])
  row = runs._row  # pylint: disable=protected-access
  memory_row = row("mnist", inner.name, xla, timings[inner.name])
  fed_row = row("mnist", fed.name, xla, timings[fed.name])
  alone_row = row("mnist", alone.name, None, timings[alone.name])
  for r in (fed_row, alone_row):
    r["ratio"] = r["examples_per_second"] / memory_row["examples_per_second"]
    r["ratio_of"] = "in-memory step"
  fed_row["note"] = (f"{s['mnist_pipeline_examples']} examples, "
                     f"{fed.epoch} new epochs")
  alone_row["note"] = "ratio > 1: the pipeline outruns the step"
  return [memory_row, fed_row, alone_row]


def eval_rows(s):
  """K = 5000 (and a smaller K for the memory) on a subset of test images."""
  from experiments.benchmarks import mnist_eval  # pylint: disable=g-import-not-at-top
  rows, first = [], None
  b = int(s["mnist_eval_batch_size"])
  for k in s["mnist_eval_ks"]:
    logging.info("MNIST evaluation K=%d on %d images", k, b)
    r = mnist_eval.run_in_subprocess(
        k, b, case=EVAL_MODEL, repeats=s["mnist_eval_repeats"],
        tiny=bool(s.get("mnist_tiny", False)))
    row = {"group": "mnist", "case": f"mnist iwae K={k}", "xla": None,
           "examples_per_second": r["examples_per_second"],
           "ms_per_step": 1e3 * r["seconds"], "spread": None,
           "peak_mib": r["peak_growth_mib"], "ratio": None, "ratio_of": "",
           "gflops": r["generator_gflops_per_second"],
           "roofline": r["bound_seconds"] / r["seconds"],
           "seconds_test_set": r["seconds_test_set"],
           "note": (f"B={b} of {TEST_IMAGES} (x{TEST_IMAGES / b:g}: "
                    f"{r['seconds_test_set']:,.0f} s for the test set, "
                    f"extrapolated), chunk {r['chunk_samples']} samples = "
                    f"{r['chunk_rows']} rows; generator FLOP bound "
                    f"{r['bound_seconds']:.2f} s at "
                    f"{r['gemm_gflops_per_second']:.1f} GFLOP/s; time / "
                    f"bound {r['seconds'] / r['bound_seconds']:.2f}"),
           "detail": r}
    if first is None or first[1] != r["chunk_rows"]:
      first = (k, r["chunk_rows"], r["peak_growth_mib"])
    else:
      row["ratio"] = r["peak_growth_mib"] / max(first[2], 1e-9)
      row["ratio_of"] = f"peak at K={first[0]}"
    rows.append(row)
  return rows


def rows(names, modes, s, workdir):
  """All selected MNIST cases (`CASES`), in order."""
  out = []
  for name in names:
    if name in STEP_CASES:
      out += model_rows(name, modes, s, workdir)
  if PIPELINE_CASE in names:
    xla = (modes[0] if len(modes) == 1 else True)
    out += pipeline_rows(xla, s, workdir)
  if EVAL_CASE in names:
    out += eval_rows(s)
  return out


def targets(rows_):
  """The issue's goals this run can judge: name, value, bound, met."""
  out = []

  def target(name, value, bound, met):
    out.append({"name": name, "value": value, "bound": bound, "met": met})

  for row in rows_:
    if row["group"] != "mnist":
      continue
    case, tag = row["case"], "on" if row["xla"] else "off"
    if case in STEP_CASES:
      target(f"{case} / hand-written TF throughput, XLA {tag}", row["ratio"],
             f">= {PACKAGE_OVER_HAND_TF}",
             row["ratio"] >= PACKAGE_OVER_HAND_TF)
      if row.get("ratio_jax") is not None:
        target(f"{case} / hand-written JAX throughput, XLA {tag}",
               row["ratio_jax"], f">= {PACKAGE_OVER_JAX}",
               row["ratio_jax"] >= PACKAGE_OVER_JAX)
      if case == "mnist_vib":
        target(f"mnist_vib step / GEMM roofline, XLA {tag}",
               row["roofline"], f">= {VIB_ROOFLINE}",
               row["roofline"] >= VIB_ROOFLINE)
    elif case.startswith("tf.data alone"):
      target("MNIST tf.data alone / the planar step's throughput (the "
             "pipeline is not the bottleneck)", row["ratio"], ">= 1.0",
             row["ratio"] >= 1.0)
    elif case.endswith(" tf.data"):
      target("MNIST tf.data-fed / in-memory step throughput", row["ratio"],
             ">= 0.95", row["ratio"] >= 0.95)
    elif case.startswith("mnist iwae"):
      over = 1.0 / row["roofline"]
      target(f"{case}: time / generator FLOP bound", over,
             f"<= {EVAL_OVER_BOUND}", over <= EVAL_OVER_BOUND)
      if row["ratio"] is not None:
        target(f"{case} peak memory / {row['ratio_of']}", row["ratio"],
               f"<= {EVAL_MEMORY_GROWTH}", row["ratio"] <= EVAL_MEMORY_GROWTH)
  return out
