r"""Benchmark: training step, package overhead, input pipeline, evaluation.

  python -m experiments.benchmark [--cases=train,hand,pipeline,eval] \
      [--xla=both|on|off] [--repeats=N] [--steps=N] [--json=PATH] [--quick]
  python -m experiments.benchmark --cases=mnist [--mnist_eval_batch_size=B]

Cases (targets: docs/design.md), all but `run` on synthetic MNIST-shaped data
(784 binary inputs, batch 128), default strategy, timed in one process after
warm-up, as the median of `--repeats` repeats of `--steps` steps, the cases of
one comparison interleaved repeat by repeat:
  train     vib_flows' training step exactly as the trainer runs it
            (`run_state.build_state` + `distributed_steps.make_train_step`, one
            in-memory batch): VAE 784-512-512, latent 40, Bernoulli, with no
            flow (vae_none), 8 and 32 planar, 4 IAF, 4 orthogonal Sylvester
            flows; VIB 784-1024-1024, latent 256, 10 classes (vib_none). Each
            with XLA on and off (`train.jit_compile`).
  hand      the no-flow VAE and VIB as a minimal hand-written TensorFlow step
            (hand_vae, hand_vib; `benchmarks/handwritten_tf.py`), XLA on and
            off.
  pipeline  vae_none fed by the trainer's tf.data pipeline over 60 000
            MNIST-shaped examples, against the same step on one in-memory
            batch (XLA as configs/default.py unless --xla=on|off).
  eval      `model.log_likelihood` (IWAE) on a fixed batch for K = 1, 100,
            1000, 5000: seconds per call and peak RSS growth, each K in a
            fresh subprocess.
  run       whole runs, each in a fresh process: the README main job's
            training on the digits (configs/vae_digits.py without its test
            evaluation and export; no flow and its own flow) against the
            independent JAX reference on the same protocol
            (`experiments/benchmarks/whole_run.py`; the JAX row needs
            `pip install "jax[cpu]" optax`), seconds per run, the median over
            --run_seeds; the ratios compare the training loops (building
            the run is reported beside them), per run and per epoch.
            `python -m experiments.research.whole_run_phases` splits the
            same runs into phases. Not in the default --cases (minutes).
  mnist     MNIST-scale rows (`benchmarks/mnist.py`), batch 100: the VIB of
            configs/vib_mnist.py (mnist_vib) and the MLP VAE of
            configs/vae_mnist.py with 10 planar maps (mnist_vae_planar10) or
            4 orthogonal Sylvester flows (mnist_vae_sylvester), each as the
            package's step, a hand-written TensorFlow step (hand_tf_*), a
            hand-written JAX step (jax_*; skipped with a message without
            JAX) and its GEMMs alone (gemm_tf_*, gemm_jax_*: the roofline),
            with GFLOP/s and roofline columns; mnist_pipeline: the input
            pipeline with dynamic binarization alone, feeding the step, and
            the step in memory; mnist_iw5000: K = 5000 importance-weighted
            log p(x) on --mnist_eval_batch_size test images (extrapolated to
            10 000) against the generator's FLOP bound, and peak memory at
            each --mnist_eval_ks. Not in the default --cases (minutes).
Units: examples/s (training: examples per second of steps; evaluation:
examples of the batch per second), ms per step (or per evaluation call),
MiB of peak resident memory growth. "ratio" is the row's examples/s divided
by that of the row named in "ratio of" (evaluation: peak memory divided by
that of the smallest K with the same chunk size). --cases also takes single
case names (vae_planar8, hand_vib, ...). --quick is a smoke run of a few
cases (its numbers mean nothing). Results: docs/performance.md.
"""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylint: disable=g-import-not-at-top
from absl import app
from absl import flags
from absl import logging

from experiments import host
from experiments.benchmarks import mnist
from experiments.benchmarks import report
from experiments.benchmarks import runs
from experiments.benchmarks import synthetic
from experiments.benchmarks import whole_run

# pylint: enable=g-import-not-at-top

GROUPS = ("train", "hand", "pipeline", "eval", "run", "mnist")
DEFAULT_GROUPS = ("train", "hand", "pipeline", "eval")
HAND_CASES = ("hand_vae", "hand_vib")

_CASES = flags.DEFINE_list(
    "cases", list(DEFAULT_GROUPS),
    f"Groups ({', '.join(GROUPS)}) or case names "
    f"({', '.join([*synthetic.TRAIN_CASES, *HAND_CASES, *mnist.CASES])}).")
_XLA = flags.DEFINE_enum(
    "xla", "both", ["both", "on", "off"],
    "XLA settings timed for train/hand (train.jit_compile).")
_REPEATS = flags.DEFINE_integer("repeats", 15, "Timed repeats (median).")
_STEPS = flags.DEFINE_integer("steps", 10, "Steps per repeat.")
_WARMUP = flags.DEFINE_integer("warmup", 10, "Untimed warm-up steps per case.")
_PIPELINE_EXAMPLES = flags.DEFINE_integer(
    "pipeline_examples", 60_000, "Training examples behind the pipeline.")
_EVAL_KS = flags.DEFINE_list("eval_ks", ["1", "100", "1000", "5000"],
                             "K values of the evaluation case.")
_EVAL_BATCH = flags.DEFINE_integer("eval_batch_size", 100,
                                   "Examples in the evaluation batch.")
_EVAL_REPEATS = flags.DEFINE_integer("eval_repeats", 2,
                                     "Timed evaluation calls per K.")
_EVAL_SUBPROCESS = flags.DEFINE_bool(
    "eval_subprocess", True, "Each K in a fresh process (clean memory peak).")
_RUN_SEEDS = flags.DEFINE_list("run_seeds", ["0", "1", "2"],
                                "Seeds of the whole-run case (one run each).")
_MNIST_PIPELINE_EXAMPLES = flags.DEFINE_integer(
    "mnist_pipeline_examples", 50_000,
    "Grey-value images behind the mnist_pipeline case.")
_MNIST_EVAL_KS = flags.DEFINE_list(
    "mnist_eval_ks", ["500", "5000"],
    "K values of mnist_iw5000 (the smaller ones: the memory baseline).")
_MNIST_EVAL_BATCH = flags.DEFINE_integer(
    "mnist_eval_batch_size", 500,
    "Test images of mnist_iw5000 (configs/vae_mnist.py evaluates batches of "
    "500); the time is extrapolated to 10 000.")
_MNIST_EVAL_REPEATS = flags.DEFINE_integer(
    "mnist_eval_repeats", 1, "Timed evaluation calls per K (mnist_iw5000).")
_MNIST_JAX = flags.DEFINE_bool("mnist_jax", True,
                               "Hand-written JAX rows of the mnist cases.")
_MNIST_TINY = flags.DEFINE_bool(
    "mnist_tiny", False,
    "mnist cases with tiny networks and batches (a smoke test; numbers "
    "meaningless).")
_JSON = flags.DEFINE_string("json", None, "Also write the results here.")
_QUICK = flags.DEFINE_bool(
    "quick", False,
    "Tiny smoke run (seconds, numbers not meaningful): unless given "
    "explicitly, --cases=vae_none,vae_planar8,hand_vae,pipeline,eval "
    "--xla=off --eval_ks=1,100, 3 steps x 2 repeats, 2 warm-up steps, 2048 "
    "pipeline examples, an evaluation batch of 4, one timed call per K.")

QUICK = {"steps": 3, "repeats": 2, "warmup": 2, "pipeline_examples": 2048,
         "eval_batch_size": 4, "eval_repeats": 1,
         "cases": ["vae_none", "vae_planar8", "hand_vae", "pipeline", "eval"],
         "xla": "off", "eval_ks": ["1", "100"]}


def settings():
  """The flag values of this run, --quick applied where not given."""
  values = {f.name: f.value for f in (_CASES, _XLA, _REPEATS, _STEPS, _WARMUP,
                                      _PIPELINE_EXAMPLES, _EVAL_KS,
                                      _EVAL_BATCH, _EVAL_REPEATS,
                                      _EVAL_SUBPROCESS, _RUN_SEEDS, _QUICK,
                                      _MNIST_PIPELINE_EXAMPLES, _MNIST_EVAL_KS,
                                      _MNIST_EVAL_BATCH, _MNIST_EVAL_REPEATS,
                                      _MNIST_JAX, _MNIST_TINY)}
  if _QUICK.value:
    for name, value in QUICK.items():
      if not flags.FLAGS[name].present:
        values[name] = value
  values["cases"] = list(values["cases"])
  values["eval_ks"] = [int(k) for k in values["eval_ks"]]
  values["run_seeds"] = [int(k) for k in values["run_seeds"]]
  values["mnist_eval_ks"] = [int(k) for k in values["mnist_eval_ks"]]
  return values


def selected(cases):
  """Expands group names.

  Returns:
    (train names, hand names, pipeline, eval, run, mnist case names).
  """
  unknown = set(cases) - set(GROUPS) - set(synthetic.TRAIN_CASES) - set(
      HAND_CASES) - set(mnist.CASES)
  if unknown:
    raise app.UsageError(f"Unknown --cases {sorted(unknown)}.")
  train = [c for c in synthetic.TRAIN_CASES if c in cases or "train" in cases]
  hand = [c for c in HAND_CASES if c in cases or "hand" in cases]
  mnist_cases = [c for c in mnist.CASES if c in cases or "mnist" in cases]
  return (train, hand, "pipeline" in cases, "eval" in cases, "run" in cases,
          mnist_cases)


def xla_modes(choice):
  """--xla value -> the train.jit_compile values to time."""
  return {"both": [True, False], "on": [True], "off": [False]}[choice]


def main(argv):
  """Times the --cases selected; prints the table (and writes --json)."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  s = settings()
  train_names, hand_names, pipeline, evaluate, whole, mnist_names = selected(
      s["cases"])
  rows = []
  start_load = os.getloadavg()
  with tempfile.TemporaryDirectory() as workdir:
    if train_names or hand_names:
      rows += runs.training_rows(train_names, hand_names, xla_modes(s["xla"]),
                                 s, workdir)
    if pipeline:
      default_xla = bool(synthetic.default_config().train.jit_compile)
      xla = default_xla if s["xla"] == "both" else s["xla"] == "on"
      rows += runs.pipeline_rows(xla, s, workdir)
    if mnist_names:
      rows += mnist.rows(mnist_names, xla_modes(s["xla"]), s, workdir)
  if evaluate:
    rows += runs.evaluation_rows(s)
  if whole:
    rows += whole_run.rows(s["run_seeds"])
  targets = runs.targets(rows) + mnist.targets(rows)
  machine = host.describe()
  machine["load_average_at_start"] = list(start_load)
  print(report.table(rows))
  print()
  print(report.targets_text(targets))
  print(f"\nMachine: {machine}")
  print(f"Devices: {report.devices()}")
  if _JSON.value:
    report.write_json(_JSON.value, {"machine": machine, "settings": s,
                                    "rows": rows, "targets": targets})
    logging.info("Wrote %s", _JSON.value)


if __name__ == "__main__":
  app.run(main)
