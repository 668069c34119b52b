"""Where a whole digits run's time goes, phase by phase, beside JAX's.

The whole-run benchmark (`experiments.benchmarks.whole_run`) gives one number
per run; this study splits it. Each run is the benchmark's run (the same
config, a fresh process, so tracing and XLA compilation are counted as a
user pays them), with the trainer's parts timed from outside: the package's
functions that `epoch_loop.train` calls are wrapped with clocks
(`timed_phases`), nothing in the package is changed. The JAX reference times
its own loop (`reference_vae_jax.train(..., phase_seconds=...)`).

Phases of the package (`vib_flows.app`): "build" (`run_state.build_state`:
data, model, optimizer), "first call" (the first call of steps beyond a
later call's time: tracing the step and, with XLA, compiling it), "steps"
(the calls of steps, less the first call's excess), "order" (the
epoch's data order, `BatchSource.start`), "validation" and its first-call
excess "validation trace", "best weights" (`State.keep_best`),
"checkpoints", "summaries" (scalars every epoch, pictures every 10) and its
first-call excess "summaries trace", "other" (the loop's own Python: what is
left of the wall time). JAX: "build" (data, parameters, optimizer state),
"first call" (the first step's excess: tracing and compiling), "steps",
"validation trace", "validation" and "other". A phase timed from outside
includes the Python of the call that runs it.

The table gives each phase's milliseconds per epoch (its seconds in the run
over the epochs run, medians over the seeds), so that the rows add up to the
benchmark's per-epoch time; and "ratio JAX / this", per epoch, all phases
included. Cases are interleaved seed by seed, as the benchmark's.

  python -m experiments.research.whole_run_phases --seeds=0,1,2
  python -m experiments.research.whole_run_phases --cases=no_flow_off,jax
      --seeds=0 --epochs=3        # (one line) a short look: one-offs dominate

Cases: jax (the reference; needs `pip install "jax[cpu]" optax`),
no_flow_off, no_flow_on (the reference's model, XLA off and on), main_off,
main_on (configs/vae_digits.py's model: Sylvester flows, mixture prior);
on request each package case with the suffix _no_grappler: the same run
with TensorFlow's graph optimizer (Grappler's meta-optimizer) off.

  python -m experiments.research.whole_run_phases --step_variants=25

times instead the main job's step one change at a time (`STEP_VARIANTS`:
no flow, one reflection, no orthogonalisation, global flows, the standard
normal prior) in one process, the variants alternated.
"""

import argparse
import contextlib
import functools
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import experiments
from experiments.benchmarks import whole_run

# Case name: (which, no_flow, xla).
CASES = {
    "jax": ("jax", True, False),
    "no_flow_off": ("vib_flows", True, False),
    "no_flow_on": ("vib_flows", True, True),
    "main_off": ("vib_flows", False, False),
    "main_on": ("vib_flows", False, True),
}
DEFAULT_CASES = tuple(CASES)
# The same runs with TensorFlow's graph optimizer (Grappler) off, on request
# only: a study of its cost (it changes rounding, hence early stopping).
for _name in DEFAULT_CASES[1:]:
  CASES[_name + "_no_grappler"] = CASES[_name]
PHASES = ("build", "first call", "steps", "order", "validation trace",
          "validation", "best weights", "checkpoints", "summaries trace",
          "summaries", "other")


class Clock:
  """Seconds of each wrapped call, by phase name, in call order."""

  def __init__(self):
    self.calls = {}

  def wrap(self, owner, name, phase):
    """Replaces owner.name by the same function timed under `phase`."""
    function = getattr(owner, name)

    @functools.wraps(function)
    def timed(*args, **kwargs):
      start = time.perf_counter()
      try:
        return function(*args, **kwargs)
      finally:
        self.calls.setdefault(phase, []).append(time.perf_counter() - start)

    return function, timed


@contextlib.contextmanager
def timed_phases(clock):
  """Wraps the functions `epoch_loop.train` calls, for as long as it runs.

  The wrapped names are those the loop looks up at each call (module
  attributes and methods), so the loop runs unchanged between the clocks.
  """
  # pylint: disable=g-import-not-at-top
  from vib_flows.app import batch_sources
  from vib_flows.app import checkpoint_io
  from vib_flows.app import evaluate
  from vib_flows.app import run_state
  from vib_flows.app import summaries
  # pylint: enable=g-import-not-at-top
  targets = [(batch_sources.GatheredBatches, "run", "calls"),
             (batch_sources.DatasetBatches, "run", "calls"),
             (batch_sources.GatheredBatches, "start", "order"),
             (batch_sources.DatasetBatches, "start", "order"),
             (evaluate, "validation_metrics", "validation"),
             (run_state.State, "keep_best", "best weights"),
             (checkpoint_io, "save", "checkpoints"),
             (summaries, "write_epoch", "summaries")]
  originals = []
  for owner, name, phase in targets:
    original, timed = clock.wrap(owner, name, phase)
    originals.append((owner, name, original))
    setattr(owner, name, timed)
  try:
    yield
  finally:
    for owner, name, original in originals:
      setattr(owner, name, original)


def _first_excess(calls):
  """(the first call beyond a typical later one, the typical one)."""
  if len(calls) < 2:
    return 0.0, calls[0] if calls else 0.0
  typical = float(np.median(calls[1:]))
  return max(calls[0] - typical, 0.0), typical


def package_phases(calls, build, total, steps_per_call):
  """Seconds of each phase of a package run from its wrapped calls.

  Args:
    calls: {wrapped phase: [seconds of each call]} (`Clock.calls`).
    build: seconds of `build_state`.
    total: seconds from the start of building to the end of training.
    steps_per_call: [steps of each call of steps] (the first call's
      excess over a later call is scaled to its length).

  Returns:
    {phase: seconds} over `PHASES`, adding up to `total`.
  """
  out = dict.fromkeys(PHASES, 0.0)
  out["build"] = build
  step_calls = calls.get("calls", [])
  if step_calls:
    later = [s / n for s, n in zip(step_calls[1:], steps_per_call[1:])]
    per_step = float(np.median(later)) if later else (
        step_calls[0] / steps_per_call[0])
    # The first call's excess over its steps at a later call's pace.
    out["first call"] = max(step_calls[0] - per_step * steps_per_call[0], 0.0)
    out["steps"] = sum(step_calls) - out["first call"]
  for phase in ("validation", "summaries"):
    excess, _ = _first_excess(calls.get(phase, []))
    out[phase + " trace"] = excess
    out[phase] = sum(calls.get(phase, [])) - excess
  out["order"] = sum(calls.get("order", []))
  out["best weights"] = sum(calls.get("best weights", []))
  out["checkpoints"] = sum(calls.get("checkpoints", []))
  out["other"] = total - sum(out.values())
  return out


def time_package(no_flow, seed, xla, epochs=None, graph_optimizer=True):
  """One timed package run here; returns its phases, epochs and steps.

  `graph_optimizer` False turns TensorFlow's graph optimizer (Grappler's
  meta-optimizer) off for the whole process, to measure its share.
  """
  # pylint: disable=g-import-not-at-top
  from vib_flows.app import batch_sources
  from vib_flows.app import distribute
  from vib_flows.app import epoch_loop
  from vib_flows.app import run_state
  # pylint: enable=g-import-not-at-top
  config = whole_run.run_config(no_flow, seed, xla)
  if epochs:
    config.train.num_epochs = int(epochs)
  distribute.configure_devices(config.runtime)  # As the main job does.
  if not graph_optimizer:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.optimizer.set_experimental_options(
        {"disable_meta_optimizer": True})
  clock = Clock()
  lengths = []
  original_run = {}
  for cls in (batch_sources.GatheredBatches, batch_sources.DatasetBatches):
    original_run[cls] = cls.run

    def counted(self, num_steps, _run=original_run[cls]):
      lengths.append(int(num_steps))
      return _run(self, num_steps)

    cls.run = counted
  try:
    with tempfile.TemporaryDirectory() as workdir:
      start, cpu_start = time.perf_counter(), time.process_time()
      state = run_state.build_state(config, workdir)
      build = time.perf_counter() - start
      with timed_phases(clock):
        history = epoch_loop.train(state, verbose=False)
      total = time.perf_counter() - start
      cpu = time.process_time() - cpu_start
  finally:
    for cls, run in original_run.items():
      cls.run = run
  phases = package_phases(clock.calls, build, total, lengths)
  return {"seconds": total, "cpu_seconds": cpu, "epochs": len(history),
          "steps": state.step, "phases": phases}


def time_jax(seed, epochs=None):
  """One timed JAX reference run; returns its phases, epochs and steps."""
  # pylint: disable=g-import-not-at-top
  from experiments.research import reference_vae_jax
  # pylint: enable=g-import-not-at-top
  protocol = whole_run.jax_protocol(whole_run.main_job_config())
  if epochs:
    protocol["epochs"] = int(epochs)
  phase_seconds = {}
  cpu_start = time.process_time()
  result = reference_vae_jax.train(seed, **protocol,
                                   num_importance_samples=0,
                                   phase_seconds=phase_seconds)
  cpu = time.process_time() - cpu_start
  out = dict.fromkeys(PHASES, 0.0)
  out.update(phase_seconds)
  total = result["setup_seconds"] + result["train_seconds"]
  return {"seconds": total, "cpu_seconds": cpu,
          "epochs": result["epochs_run"], "steps": result["steps"],
          "phases": out}


# The main job's step, one change at a time (`step_variants`): name ->
# overrides of `whole_run.run_config(no_flow=False, ...)`.
STEP_VARIANTS = {
    "no flow, N(0, I) prior": {"flow.num_flows": 0,
                               "model.prior": "standard_normal"},
    "no flow, mixture prior": {"flow.num_flows": 0},
    "the main job": {},
    "the main job, 1 reflection per flow": {"flow.num_householder": 1},
    "the main job, T-SNF (Q = I)": {"flow.name": "sylvester_triangular"},
    "the main job, global flows": {"flow.amortized": False},
    "the main job, N(0, I) prior": {"model.prior": "standard_normal"},
}


def variant_config(overrides, seed=0):
  """The main job's run config (`whole_run.run_config`), XLA off, changed."""
  config = whole_run.run_config(no_flow=False, seed=seed, xla=False)
  for key, value in overrides.items():
    section, field = key.split(".")
    config[section][field] = value
  return config


def step_variants(repeats):
  """Ms per step (and per validation) of each of STEP_VARIANTS, one process.

  Each variant's multi-step loop as the trainer builds it (one replica, the
  in-memory digits: `batch_sources.GatheredBatches`), 31 steps a call (a
  digits epoch), the variants alternated call by call, in one order and then
  the reverse.

  Returns:
    Markdown table: ms per step, over the first variant's step, ms per
    validation, nodes of the loop's graph (its while loop's body), weights.
  """
  # pylint: disable=g-import-not-at-top
  import tensorflow as tf

  from vib_flows.app import batch_sources
  from vib_flows.app import distribute
  from vib_flows.app import evaluate
  from vib_flows.app import run_state
  # pylint: enable=g-import-not-at-top
  configs = {n: variant_config(o) for n, o in STEP_VARIANTS.items()}
  distribute.configure_devices(configs["the main job"].runtime)
  steps = 31
  runs, facts = {}, {}
  for name, config in configs.items():
    state = run_state.build_state(config, tempfile.mkdtemp())
    source = batch_sources.GatheredBatches(state)
    source.start(0, 0)
    # pylint: disable=protected-access
    graph = source._loop.get_concrete_function(
        source._features, source._epoch_order, tf.constant(0),
        tf.constant(steps)).graph
    # pylint: enable=protected-access
    nodes = sum(len(f.node_def)
                for f in graph.as_graph_def().library.function)
    float(source.run(steps)["loss"])  # The first call.
    evaluate.validation_metrics(state.model, state.splits, config)
    runs[name] = (source, state, config)
    facts[name] = (nodes, len(state.model.trainable_variables))
  times = {n: [] for n in runs}
  validations = {n: [] for n in runs}
  names = list(runs)
  for r in range(repeats):
    for name in names if r % 2 else names[::-1]:
      source, state, config = runs[name]
      source.start(1 + r, 0)
      start = time.perf_counter()
      float(source.run(steps)["loss"])
      times[name].append((time.perf_counter() - start) / steps * 1e3)
      start = time.perf_counter()
      evaluate.validation_metrics(state.model, state.splits, config)
      validations[name].append((time.perf_counter() - start) * 1e3)
  base = float(np.median(times[names[0]]))
  lines = ["| model | ms per step | / no flow | validation ms | graph nodes "
           "| weights |", "|---|---|---|---|---|---|"]
  for name in names:
    step = float(np.median(times[name]))
    nodes, weights = facts[name]
    lines.append(f"| {name} | {step:.2f} | {step / base:.2f} | "
                 f"{np.median(validations[name]):.1f} | {nodes} | {weights} |")
  return "\n".join(lines)


def run_case(case, seed, epochs=None, timeout=1800):
  """Runs one case in a fresh Python process; returns its JSON dict."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
             PYTHONPATH=experiments.ROOT + os.pathsep
             + os.environ.get("PYTHONPATH", ""))
  out = subprocess.run(
      [sys.executable, "-m", "experiments.research.whole_run_phases",
       f"--child={case}", f"--seeds={seed}"]
      + ([f"--epochs={epochs}"] if epochs else []),
      cwd=experiments.ROOT, env=env, capture_output=True, text=True,
      timeout=timeout, check=False)
  if out.returncode:
    raise RuntimeError(f"case {case} failed:\n{out.stderr[-3000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def table(results):
  """Markdown: ms per epoch of each phase, median over seeds, per case.

  Args:
    results: {case: [run dicts of `time_package` / `time_jax`]}.
  """
  cases = list(results)
  lines = ["| ms per epoch | " + " | ".join(cases) + " |",
           "|---" * (len(cases) + 1) + "|"]

  def per_epoch(run, phase):
    return 1e3 * run["phases"][phase] / run["epochs"]

  for phase in PHASES:
    cells = [f"{np.median([per_epoch(r, phase) for r in results[c]]):.1f}"
             for c in cases]
    lines.append(f"| {phase} | " + " | ".join(cells) + " |")
  totals = {c: float(np.median([1e3 * r["seconds"] / r["epochs"]
                                for r in results[c]])) for c in cases}
  lines.append("| **total** | " + " | ".join(
      f"**{totals[c]:.1f}**" for c in cases) + " |")
  cpu = {c: float(np.median([1e3 * r["cpu_seconds"] / r["epochs"]
                             for r in results[c]])) for c in cases}
  lines.append("| CPU ms per epoch (all threads) | " + " | ".join(
      f"{cpu[c]:.1f}" for c in cases) + " |")
  lines.append("| s per run | " + " | ".join(
      f"{np.median([r['seconds'] for r in results[c]]):.2f}"
      for c in cases) + " |")
  lines.append("| epochs run | " + " | ".join(
      ", ".join(str(r["epochs"]) for r in results[c]) for c in cases) + " |")
  if "jax" in results:
    lines.append("| ratio JAX / this, per epoch | " + " | ".join(
        "" if c == "jax" else f"{totals['jax'] / totals[c]:.2f}"
        for c in cases) + " |")

    def without_build(c):
      return float(np.median([(r["seconds"] - r["phases"]["build"])
                              / r["epochs"] for r in results[c]]))

    lines.append("| the same without \"build\" | " + " | ".join(
        "" if c == "jax" else f"{without_build('jax') / without_build(c):.2f}"
        for c in cases) + " |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--cases", default=",".join(DEFAULT_CASES),
                      help=f"Comma-separated, of {', '.join(CASES)}.")
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--epochs", type=int, default=0,
                      help="Epoch limit (0: the config's; early stopping "
                      "ends the runs).")
  parser.add_argument("--child", choices=sorted(CASES), default=None,
                      help=argparse.SUPPRESS)
  parser.add_argument("--json", default="", help="Also write the runs here.")
  parser.add_argument("--step_variants", type=int, default=0, metavar="N",
                      help="Instead of runs: the main job's step, one change "
                      "at a time (STEP_VARIANTS), N calls of 31 steps each.")
  args = parser.parse_args()
  if args.step_variants:
    load = os.getloadavg()
    print(step_variants(args.step_variants))
    print(f"load average at start {load[0]:.2f}, at end "
          f"{os.getloadavg()[0]:.2f}")
    return
  seeds = [int(s) for s in args.seeds.split(",")]
  if args.child:
    which, no_flow, xla = CASES[args.child]
    result = (time_jax(seeds[0], args.epochs) if which == "jax"
              else time_package(no_flow, seeds[0], xla, args.epochs,
                                not args.child.endswith("_no_grappler")))
    print(json.dumps(result))
    return
  cases = [c.strip() for c in args.cases.split(",") if c.strip()]
  unknown = sorted(set(cases) - set(CASES))
  if unknown:
    parser.error(f"unknown cases {unknown}; valid: {', '.join(CASES)}")
  if "jax" in cases and not whole_run.jax_available():
    print("JAX or optax is not installed: the jax case is skipped.")
    cases.remove("jax")
  results = {c: [] for c in cases}
  load = os.getloadavg()
  for seed in seeds:  # Interleaved: load changes hit every case alike.
    for case in cases:
      results[case].append(run_case(case, seed, args.epochs or None))
      print(f"seed {seed} {case}: {results[case][-1]['seconds']:.2f} s, "
            f"{results[case][-1]['epochs']} epochs", flush=True)
  print(table(results))
  print(f"load average at start {load[0]:.2f}, at end "
        f"{os.getloadavg()[0]:.2f}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()
