"""The whole-run case: wall time of a digits training run, against JAX.

A user waits for whole runs, not for steps. This case times the README main
job's training (configs/vae_digits.py: build the model, then train with its
per-epoch validation, early stopping and checkpoints; no test evaluation, no
export), each run in a fresh process so that tracing and XLA compilation are
counted as a user pays them, and the independent JAX + optax reference
(experiments/research/reference_vae_jax.py) on the same protocol, read from
the same config file (`jax_protocol`): same data, network, activation,
optimizer, learning rate, batch, warm-up, epochs and early stopping, with no
flow and the standard normal prior (`run_config`).

Each run gives "seconds" (building included) split into "build_seconds"
(vib_flows: data, model, optimizer and checkpoint manager; JAX: data,
parameters and optimizer state) and "train_seconds" (the training loop, from
the first step to its end: tracing, XLA or JIT compilation, validation and,
for vib_flows, checkpoints and summaries included). The ratios compare the
training loops, like with like (`rows`); the building is reported beside
them.

  python -m experiments.benchmarks.whole_run --which=vib_flows [--no_flow]
  python -m experiments.benchmarks.whole_run --which=jax

print one JSON line each: seconds, build_seconds, train_seconds, epochs run,
steps. experiments/research/whole_run_phases.py splits the same runs into
their phases.
"""

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

import experiments

ROOT = experiments.ROOT
JAX_REFERENCE = os.path.join(ROOT, "experiments", "research",
                             "reference_vae_jax.py")


DEFAULT_THREADS_CASE = "digits_run_no_flow_default_threads"


def jax_available():
  """True if JAX and optax can be imported (the reference needs them)."""
  return all(importlib.util.find_spec(m) is not None for m in ("jax", "optax"))


def main_job_config():
  """configs/vae_digits.py of the source tree: the README main job's config."""
  from vib_flows.app import config_files  # pylint: disable=g-import-not-at-top
  return config_files.load(experiments.config_path("vae_digits"))


def jax_protocol(config):
  """The JAX reference's `train` arguments for the protocol of `config`.

  Raises:
    ValueError: `config` uses something the reference does not implement
      (another optimizer or activation, several samples, gradient clipping).
  """
  unsupported = []
  if config.optimizer.name not in ("adam", "adamax"):
    unsupported.append(f"optimizer.name={config.optimizer.name}")
  if config.model.activation not in ("relu", "leaky_relu"):
    unsupported.append(f"model.activation={config.model.activation}")
  if config.loss.num_samples != 1:
    unsupported.append(f"loss.num_samples={config.loss.num_samples}")
  if config.optimizer.clipnorm:
    unsupported.append(f"optimizer.clipnorm={config.optimizer.clipnorm}")
  if unsupported:
    raise ValueError("The JAX reference does not implement "
                     + ", ".join(unsupported) + ".")
  return {"epochs": int(config.train.num_epochs),
          "warmup": int(config.loss.warmup_steps),
          "patience": int(config.train.early_stopping_patience),
          "batch": int(config.train.batch_size),
          "optimizer": str(config.optimizer.name),
          "learning_rate": float(config.optimizer.learning_rate),
          "activation": str(config.model.activation)}


def run_config(no_flow, seed, xla=True, intra_op_threads=None):
  """The config of one timed vib_flows run: configs/vae_digits.py, changed.

  `no_flow` makes it the JAX reference's model: no flow
  (`flow.num_flows = 0`) and the standard normal prior (the main job learns
  a mixture prior); `xla` sets `train.jit_compile` (compiling the step
  costs seconds once); `intra_op_threads`, unless None, replaces the
  file's `runtime.intra_op_threads` (0: TensorFlow's default). Export off:
  the case times training.
  """
  config = main_job_config()
  if no_flow:
    config.flow.num_flows = 0
    config.model.prior = "standard_normal"
  config.seed = seed
  config.train.jit_compile = bool(xla)
  if intra_op_threads is not None:
    config.runtime.intra_op_threads = int(intra_op_threads)
  config.export.enabled = False
  return config


def time_vib_flows(no_flow, seed, xla=True, intra_op_threads=None):
  """Trains `run_config(no_flow, seed, xla, intra_op_threads)` here.

  Returns:
    {"seconds", "build_seconds", "train_seconds", "epochs", "steps"}: wall
    time from building the run (data, model, optimizer) to the end of
    training, and its two parts.
  """
  from vib_flows.app import distribute  # pylint: disable=g-import-not-at-top
  from vib_flows.app import epoch_loop  # pylint: disable=g-import-not-at-top
  from vib_flows.app import run_state  # pylint: disable=g-import-not-at-top
  config = run_config(no_flow, seed, xla, intra_op_threads)
  distribute.configure_devices(config.runtime)  # As the main job does.
  with tempfile.TemporaryDirectory() as workdir:
    start = time.perf_counter()
    state = run_state.build_state(config, workdir)
    built = time.perf_counter()
    history = epoch_loop.train(state, verbose=False)
    end = time.perf_counter()
  return {"seconds": end - start, "build_seconds": built - start,
          "train_seconds": end - built, "epochs": len(history),
          "steps": state.step}


def time_jax(seed):
  """Trains the JAX reference once on the main job's protocol.

  Returns:
    {"seconds", "build_seconds", "train_seconds", "epochs", "steps"} (the
    test metrics are skipped: not timed).
  """
  protocol = jax_protocol(main_job_config())
  # Imported here: the reference imports JAX, which the other cases lack.
  reference = importlib.import_module(
      "experiments.research.reference_vae_jax")
  result = reference.train(seed, **protocol, num_importance_samples=0)
  return {"seconds": result["setup_seconds"] + result["train_seconds"],
          "build_seconds": result["setup_seconds"],
          "train_seconds": result["train_seconds"],
          "epochs": result["epochs_run"], "steps": result["steps"]}


def run_in_subprocess(which, seed, no_flow=False, xla=True,
                      intra_op_threads=None, timeout=1800):
  """Runs one timed run in a fresh Python process; returns its JSON dict."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
             PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  out = subprocess.run(
      [sys.executable, "-m", "experiments.benchmarks.whole_run",
       f"--which={which}", f"--seed={seed}",
       f"--xla={'on' if xla else 'off'}"]
      + (["--no_flow"] if no_flow else [])
      + ([] if intra_op_threads is None
         else [f"--intra_op_threads={intra_op_threads}"]),
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
      check=False,
  )
  if out.returncode:
    raise RuntimeError(f"whole run {which} failed:\n{out.stderr[-3000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def _median(runs, key, per_epoch=False):
  """Median over `runs` of run[key] (over its epochs when `per_epoch`)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  return float(np.median([r[key] / (r["epochs"] if per_epoch else 1)
                          for r in runs]))


def rows(seeds, xla_modes=(True, False)):
  """Benchmark rows: median seconds per whole run, vib_flows and JAX.

  "seconds_per_run" counts building; "train_seconds_per_run" and
  "seconds_per_epoch" the training loop only (`time_vib_flows`). The ratio
  of each vib_flows row is the JAX reference's training-loop seconds
  divided by its own (above 1: vib_flows is faster), when JAX is installed;
  "ratio_per_epoch" the same per epoch (early stopping ends the runs at
  different epochs), the median of each run's seconds per epoch. Besides the
  no-flow and main-job runs with and without XLA as the file sets them up
  (configs/vae_digits.py: one thread per op), the no-flow run without XLA
  once more with TensorFlow's default thread pools
  (`runtime.intra_op_threads = 0`).
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  results = {}
  for seed in seeds:  # Interleaved, so load changes hit every case alike.
    if jax_available():
      results.setdefault(("jax_reference", None), []).append(
          run_in_subprocess("jax", seed))
    for no_flow in (True, False):
      case = "digits_run_no_flow" if no_flow else "digits_run_main_job"
      for xla in xla_modes:
        results.setdefault((case, xla), []).append(
            run_in_subprocess("vib_flows", seed, no_flow, xla))
    results.setdefault((DEFAULT_THREADS_CASE, False), []).append(
        run_in_subprocess("vib_flows", seed, True, False, intra_op_threads=0))
  out = []
  jax_runs = results.get(("jax_reference", None))
  for (case, xla), runs in results.items():
    seconds = np.array([r["seconds"] for r in runs])
    train = _median(runs, "train_seconds")
    per_epoch = _median(runs, "train_seconds", per_epoch=True)
    epochs = [r["epochs"] for r in runs]
    ratio = per_epoch_ratio = None
    if case != "jax_reference" and jax_runs:
      ratio = _median(jax_runs, "train_seconds") / train
      per_epoch_ratio = _median(jax_runs, "train_seconds",
                                per_epoch=True) / per_epoch
    note = (f"seeds {list(seeds)}, epochs run {epochs}, building "
            f"{_median(runs, 'build_seconds'):.2f} s")
    if ratio is not None:
      # Early stopping ends runs at different epochs (other random streams):
      # the per-epoch ratio compares like with like.
      note += f", per epoch JAX / this {per_epoch_ratio:.3f}"
    out.append({
        "case": case, "group": "run", "xla": xla,
        "seconds_per_run": float(np.median(seconds)),
        "train_seconds_per_run": train,
        "build_seconds_per_run": _median(runs, "build_seconds"),
        "seconds_per_epoch": per_epoch,
        "spread": float((seconds.max() - seconds.min()) / np.median(seconds)),
        "ratio": ratio, "ratio_per_epoch": per_epoch_ratio,
        "ratio_of": None if ratio is None else "jax_reference",
        "note": note,
    })
  return out


def _main():
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--which", choices=["vib_flows", "jax"], required=True)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--no_flow", action="store_true",
                      help="Train without the config's flow.")
  parser.add_argument("--xla", choices=["on", "off"], default="on")
  parser.add_argument("--intra_op_threads", type=int, default=None,
                      help="runtime.intra_op_threads (default: the file's; "
                      "0: TensorFlow's default).")
  args = parser.parse_args()
  if args.which == "jax":
    result = time_jax(args.seed)
  else:
    result = time_vib_flows(args.no_flow, args.seed, args.xla == "on",
                            args.intra_op_threads)
  print(json.dumps(result))


if __name__ == "__main__":
  _main()
