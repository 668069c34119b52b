r"""Each flow family's layers against the same flow written by hand in TF.

    python -m experiments.benchmarks.flow_families [--cases=maf,spline] \
        [--xla=both|on|off] [--repeats=15] [--steps=40] [--json=PATH] [--tiny]

For each family (`CASES`), a density-estimation training step of a stack of
L global (not amortized) layers on x [B, d] (configs/vae_mnist.py's d = 40
and B = 100, L = 4, conditioners 320 wide as the vae_mnist rows of
experiments/sweeps/grids.py):

    u, log|det J_f(x)| = f(x),
    loss = -mean_b [log N(u_b; 0, I) + log|det J_f(x_b)|],

its gradient and an Adam update (Kingma & Ba 2015, Keras's defaults, written
out, the same code for both sides), all in one `tf.function` (XLA on and
off). f is the package's `flows.make_stack(case, L, dim=d, ...)` (Reverse
layers between the layers that condition on an order) called on x, or for
MAF its inverse, MAF's density direction (Papamakarios et al. 2017: one
MADE pass a layer); beside it the same f written by hand in plain
TensorFlow (`flow_families_tf`: no vib_flows code, no TFP), with the
package layers' weights copied in, so both compute the same function
(experiments/tests/test_flow_families.py checks outputs, log-dets and
gradients in float64).

  maf                    MAF, density direction (MADE, 2 hidden layers)
  iaf                    IAF, forward (the gated update)
  real_nvp               affine coupling
  spline                 rational-quadratic spline coupling, 8 bins on
                         [-5, 5]
  sylvester_orthogonal   O-SNF, M = 32 orthonormal columns (QR)
  sylvester_householder  H-SNF, 8 reflections
  sylvester_triangular   T-SNF

The package and hand-written steps of a family, XLA on and off, are timed
interleaved repeat by repeat (`timing.measure`); rows have the median
ms/step and, for the package, ratio = its examples/s over the hand-written
one's (hand time / package time) and slowdown = package time / hand time,
whose goal is <= 1.3 (`SLOWDOWN_GOAL`).

API for `experiments.benchmark`: `CASES`, `run(cases, modes, ...)` and
`rows(names, modes, s)` return rows in `report`'s format (group
"families"), `format_rows(rows)` the per-family table, `targets(rows)` the
goals, `provenance(command, load, started)` the provenance line.
"""

import argparse
import dataclasses
import datetime
import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylint: disable=g-import-not-at-top
from absl import logging
import keras
import numpy as np
import tensorflow as tf

from experiments import host
from experiments.benchmarks import flow_families_tf
from experiments.benchmarks import report
from experiments.benchmarks import runs
from experiments.benchmarks import timing
from vib_flows import flows

# pylint: enable=g-import-not-at-top

CASES = ("maf", "iaf", "real_nvp", "spline", "sylvester_orthogonal",
         "sylvester_householder", "sylvester_triangular")
GROUP = "families"
# Goal: the package's step at most this many times the hand-written one's.
SLOWDOWN_GOAL = 1.3
LEARNING_RATE = 1e-3
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclasses.dataclass(frozen=True)
class Sizes:
  """The shapes of the benchmark.

  Attributes:
    batch_size: B.
    dim: d.
    num_layers: L, flow layers in the stack.
    hidden_units: width of the MADE and coupling networks.
    num_bins: K of the spline.
    bound: the spline acts on [-bound, bound].
    num_ortho_vectors: M of the orthogonal Sylvester flow.
    num_householder: reflections of the Householder Sylvester flow.
  """

  batch_size: int = 100
  dim: int = 40
  num_layers: int = 4
  hidden_units: int = 320
  num_bins: int = 8
  bound: float = 5.0
  num_ortho_vectors: int = 32
  num_householder: int = 8


SIZES = Sizes()
# Tests and smoke runs: seconds, numbers meaningless.
TINY = Sizes(batch_size=8, dim=6, num_layers=1, hidden_units=16, num_bins=4,
             num_ortho_vectors=4, num_householder=2)


def options(case, sizes):
  """The `flows.make_stack` options of family `case` at `sizes`."""
  if case in ("maf", "iaf", "real_nvp"):
    return {"hidden_units": sizes.hidden_units}
  if case == "spline":
    return {"hidden_units": sizes.hidden_units, "num_bins": sizes.num_bins,
            "bound": sizes.bound}
  if case == "sylvester_orthogonal":
    return {"num_ortho_vectors": sizes.num_ortho_vectors}
  if case == "sylvester_householder":
    return {"num_householder": sizes.num_householder}
  if case == "sylvester_triangular":
    return {}
  raise ValueError(f"Unknown family {case!r}; valid: {', '.join(CASES)}.")


# ------------------------------------------------------------------ package
def package_stack(case, sizes=SIZES, dtype="float32"):
  """The package's stack of `sizes.num_layers` global layers (built)."""
  return flows.make_stack(case, sizes.num_layers, dim=sizes.dim, dtype=dtype,
                          **options(case, sizes))


def package_flow(case, stack):
  """f: x [B, d] -> (u [B, d], log|det J_f(x)| [B]) of the package's stack.

  The stack's call, or for MAF its inverse (the density direction).
  """
  if case == "maf":
    return stack.inverse
  return stack


def weighted_layers(stack):
  """The layers of the stack that have weights (not the Reverse layers)."""
  return [layer for layer in stack.flows if layer.trainable_weights]


def hand_weights(case, stack):
  """The stack's weights in `flow_families_tf`'s layout: [L] of dicts."""
  return [flow_families_tf.hand_layout(
      case, {w.name: np.asarray(w) for w in layer.trainable_weights})
          for layer in weighted_layers(stack)]


def hand_flow(case, sizes, layers):
  """The hand-written f: x [B, d] -> (u, log|det|), `layers` its weights."""
  spline_options = ({"num_bins": sizes.num_bins, "bound": sizes.bound}
                    if case == "spline" else {})
  return lambda x: flow_families_tf.stack(case, layers, x, **spline_options)


def negative_log_likelihood(u, log_det):
  """-mean_b [log N(u_b; 0, I) + log_det_b] for u [B, d], log_det [B]."""
  d = u.shape[-1]
  log_base = -0.5 * tf.reduce_sum(tf.square(u), -1) - d * _HALF_LOG_2PI
  return -tf.reduce_mean(log_base + log_det)


# ------------------------------------------------------------------- runner
class FlowStep:
  """One training step of a flow f on a fixed batch: loss, gradient, Adam.

  Adam (Kingma & Ba 2015; beta_1 0.9, beta_2 0.999, epsilon 1e-7, Keras's
  defaults) is written out, so the package and hand-written cases share
  the loss and the update: they differ in their flows only.

  Args:
    name: row name.
    flow: x [B, d] -> (u [B, d], log|det| [B]).
    variables: the trainable variables f reads.
    x: [B, d] the batch (float32 array).
    jit_compile: XLA-compile the whole step.
  """

  def __init__(self, name, flow, variables, x, jit_compile):
    self.name = name
    self.flow = flow
    self.variables = list(variables)
    self.x = tf.constant(x)
    self.examples_per_step = int(x.shape[0])
    self.m = [tf.Variable(tf.zeros(v.shape, v.dtype)) for v in self.variables]
    self.v = [tf.Variable(tf.zeros(v.shape, v.dtype)) for v in self.variables]
    self.t = tf.Variable(0.0, dtype=tf.float32)
    self.train_step = tf.function(self._step, jit_compile=bool(jit_compile),
                                  autograph=False)

  def loss(self, x):
    """The loss at the current weights (no update)."""
    return negative_log_likelihood(*self.flow(x))

  def _step(self, x):
    with tf.GradientTape() as tape:
      loss = self.loss(x)
    grads = tape.gradient(loss, self.variables)
    t = self.t + 1.0
    b1, b2, epsilon = 0.9, 0.999, 1e-7
    lr = LEARNING_RATE * tf.sqrt(1.0 - b2**t) / (1.0 - b1**t)
    for var, g, m, v in zip(self.variables, grads, self.m, self.v):
      m.assign(b1 * m + (1.0 - b1) * g)
      v.assign(b2 * v + (1.0 - b2) * tf.square(g))
      var.assign_sub(tf.cast(lr, var.dtype) * m / (tf.sqrt(v) + epsilon))
    self.t.assign(t)
    return loss

  def step(self):
    """Runs one step and reads its loss (checked finite)."""
    loss = float(self.train_step(self.x))
    if not np.isfinite(loss):
      raise FloatingPointError(f"{self.name}: non-finite loss {loss}")
    return loss


def batch(sizes, seed=0):
  """The fixed batch x [B, d]: standard-normal draws (float32)."""
  rng = np.random.default_rng(seed)
  return rng.normal(size=(sizes.batch_size, sizes.dim)).astype(np.float32)


def runners(case, xla, sizes=SIZES, seed=0):
  """(package step, hand-written step) of `case`, at the same weights."""
  keras_seed = seed * 1000 + CASES.index(case)
  keras.utils.set_random_seed(keras_seed)
  stack = package_stack(case, sizes)
  hand = [{k: tf.Variable(v, name=k) for k, v in layer.items()}
          for layer in hand_weights(case, stack)]
  x = batch(sizes, seed)
  package = FlowStep(runs._label(case, xla), package_flow(case, stack),  # pylint: disable=protected-access
                     stack.trainable_variables, x, xla)
  handwritten = FlowStep(
      runs._label(f"hand_{case}", xla), hand_flow(case, sizes, hand),  # pylint: disable=protected-access
      [v for layer in hand for v in layer.values()], x, xla)
  return package, handwritten


# --------------------------------------------------------------------- rows
def run(cases=CASES, modes=(True, False), sizes=SIZES, steps=40, repeats=15,
        warmup=5):
  """Times each family's package and hand-written steps; returns rows.

  Args:
    cases: families (`CASES`).
    modes: the XLA settings timed (jit_compile values).
    sizes: `Sizes`.
    steps: steps per repeat.
    repeats: timed repeats (medians reported).
    warmup: untimed steps per runner first.

  Returns:
    Rows (`report`'s keys), per case and XLA setting the package's
    (`case`) then the hand-written (`hand_<case>`); the package's with
    ratio, slowdown and goal_met.
  """
  out = []
  for case in cases:
    built, meta = [], {}
    for xla in modes:
      logging.info("Building %s, XLA %s", case, xla)
      package, hand = runners(case, xla, sizes)
      built += [package, hand]
      meta[package.name] = (case, xla)
      meta[hand.name] = (f"hand_{case}", xla)
    logging.info("Timing %d runners of %s", len(built), case)
    timings = timing.measure(built, steps, repeats, warmup)
    rows_ = {label: runs._row(GROUP, *meta[label], t)  # pylint: disable=protected-access
             for label, t in timings.items()}
    out += _compare(case, modes, rows_)
  return out


def _compare(case, modes, rows_):
  """Sets the package rows' ratio, slowdown and notes; returns the rows."""
  label = runs._label  # pylint: disable=protected-access
  for xla in modes:
    package = rows_[label(case, xla)]
    hand = rows_[label(f"hand_{case}", xla)]
    package["ratio"] = (package["examples_per_second"]
                        / hand["examples_per_second"])
    package["ratio_of"] = f"hand_{case}"
    package["slowdown"] = package["ms_per_step"] / hand["ms_per_step"]
    package["goal_met"] = package["slowdown"] <= SLOWDOWN_GOAL
    notes = [f"package/hand {package['slowdown']:.2f}x (goal <= "
             f"{SLOWDOWN_GOAL}x) {'met' if package['goal_met'] else 'MISSED'}"]
    if xla and label(case, False) in rows_:
      speedup = rows_[label(case, False)]["ms_per_step"] / package[
          "ms_per_step"]
      notes.append(f"XLA on/off {speedup:.2f}x")
    package["note"] = "; ".join(notes)
  return list(rows_.values())


def rows(names, modes, s):
  """`run` with `experiments.benchmark`'s settings dict.

  Args:
    names: families.
    modes: XLA settings.
    s: settings with "steps", "repeats", "warmup" (and "families_tiny":
      `TINY` sizes, a smoke run).
  """
  sizes = TINY if s.get("families_tiny", False) else SIZES
  return run(names, modes, sizes, s["steps"], s["repeats"], s["warmup"])


def targets(rows_):
  """The goals this run can judge: name, value, bound, met (`report`)."""
  out = []
  for row in rows_:
    if row.get("group") == GROUP and row.get("slowdown") is not None:
      tag = "on" if row["xla"] else "off"
      out.append({"name": f"{row['case']} / hand-written TF step time, "
                          f"XLA {tag}",
                  "value": row["slowdown"], "bound": f"<= {SLOWDOWN_GOAL}",
                  "met": row["goal_met"]})
  return out


def format_rows(rows_):
  """The per-family Markdown table: package and hand-written ms/step.

  "CPU package / hand": the ratio of their process CPU times per step
  (all threads), which other load on the machine stretches less than the
  wall time.
  """
  lines = [
      "| family | XLA | package ms/step | hand-written ms/step | "
      f"package / hand | goal <= {SLOWDOWN_GOAL}x | CPU package / hand | "
      "spread (package, hand) |",
      "|---|---|---|---|---|---|---|---|"]
  by_label = {(r["case"], r["xla"]): r for r in rows_
              if r.get("group") == GROUP}
  for (case, xla), package in by_label.items():
    hand = by_label.get((f"hand_{case}", xla))
    if hand is None or package.get("slowdown") is None:
      continue
    cpu = ""
    if package.get("cpu_ms_per_step") and hand.get("cpu_ms_per_step"):
      cpu = f"{package['cpu_ms_per_step'] / hand['cpu_ms_per_step']:.2f}x"
    lines.append(
        f"| {case} | {'on' if xla else 'off'} | "
        f"{package['ms_per_step']:.2f} | {hand['ms_per_step']:.2f} | "
        f"{package['slowdown']:.2f}x | "
        f"{'met' if package['goal_met'] else 'MISSED'} | {cpu} | "
        f"{package['spread']:.0%}, {hand['spread']:.0%} |")
  return "\n".join(lines)


def provenance(command, load_at_start, started):
  """One line: CPU, cores, date and times, command, load averages, versions.

  Args:
    command: the command line run.
    load_at_start: `os.getloadavg()` before the timings.
    started: the UTC `datetime` before the timings.
  """
  machine = host.describe()
  ended = datetime.datetime.now(datetime.timezone.utc)
  load = ", ".join(f"{a:.2f}" for a in load_at_start)
  load_end = ", ".join(f"{a:.2f}" for a in machine["load_average"])
  return (f"Provenance: {machine['cpu']}, {machine['logical_cpus']} logical "
          f"CPUs, {started:%Y-%m-%d %H:%M}-{ended:%H:%M} UTC, `{command}`, "
          f"load average (1, 5, 15 min) {load} at the start, {load_end} at "
          f"the end; TensorFlow {machine['tensorflow']}, Keras "
          f"{machine['keras']}.")


# --------------------------------------------------------------------- main
def parse_args(argv=None):
  """The command line (argparse: no absl flags to clash on import)."""
  parser = argparse.ArgumentParser(
      prog="python -m experiments.benchmarks.flow_families",
      description="Each flow family against the same flow hand-written in "
      "TensorFlow.")
  parser.add_argument("--cases", default=",".join(CASES),
                      help=f"Comma-separated families: {', '.join(CASES)}.")
  parser.add_argument("--xla", choices=("both", "on", "off"), default="both",
                      help="XLA settings timed (jit_compile).")
  parser.add_argument("--repeats", type=int, default=15,
                      help="Timed repeats (median).")
  parser.add_argument("--steps", type=int, default=40,
                      help="Steps per repeat.")
  parser.add_argument("--warmup", type=int, default=5,
                      help="Untimed warm-up steps per case.")
  parser.add_argument("--tiny", action="store_true",
                      help="Tiny sizes (a smoke run; numbers meaningless).")
  parser.add_argument("--json", default=None, help="Also write the rows here.")
  args = parser.parse_args(argv)
  args.cases = [c for c in args.cases.split(",") if c]
  unknown = set(args.cases) - set(CASES)
  if unknown:
    parser.error(f"Unknown --cases {sorted(unknown)}; valid: "
                 f"{', '.join(CASES)}.")
  args.cases = [c for c in CASES if c in args.cases]
  return args


def main(argv=None):
  """Times the --cases, prints the table, goals and provenance."""
  args = parse_args(argv)
  modes = {"both": [True, False], "on": [True], "off": [False]}[args.xla]
  load = os.getloadavg()
  started = datetime.datetime.now(datetime.timezone.utc)
  sizes = TINY if args.tiny else SIZES
  rows_ = run(args.cases, modes, sizes, args.steps, args.repeats, args.warmup)
  command = " ".join(["python -m experiments.benchmarks.flow_families",
                      *(sys.argv[1:] if argv is None else argv)])
  line = provenance(command, load, started)
  goals = targets(rows_)
  print(f"{sizes}; medians of {args.repeats} interleaved repeats of "
        f"{args.steps} steps\n")
  print(format_rows(rows_))
  print()
  print(report.targets_text(goals))
  print(f"\n{line}")
  if args.json:
    report.write_json(args.json, {
        "provenance": line, "sizes": dataclasses.asdict(sizes),
        "rows": rows_, "targets": goals})
  return rows_


if __name__ == "__main__":
  # Each step function is traced once, but TensorFlow counts the traces of
  # all of them (the same code) and warns of retracing.
  tf.get_logger().setLevel("ERROR")
  main()
