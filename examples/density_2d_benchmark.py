"""Training speed of examples/density_2d.py's model on each Keras backend.

    python examples/density_2d_benchmark.py [--epochs=5] [--repeats=5] \
        [--ablation]

The model: 4 spline coupling layers with Reverse between them, the two-moons
data (2000 points), batch 200 (10 steps an epoch), Adam, `model.fit`. The
control: a plain Keras MLP of the same sizes without a flow (4 blocks Dense
2-64-2, the same Gaussian log-density head and loss).

The backend is chosen per process, so each installed backend (TensorFlow,
JAX, PyTorch; a missing one is skipped with a message) runs in a worker
process of its own, started once. A worker builds its cases and warms each
up: two `fit` calls of one epoch (tracing, compilation, and TensorFlow's
retrace of the training function at its second call). Then, repeat by
repeat, the workers take turns, one at a time, and each times one `fit`
call of `--epochs` epochs for each of its cases, in a rotating order, so
that the load of the machine, which drifts, falls on every case alike.
The cases:

- TensorFlow at the defaults: `compile(optimizer, loss)`, `fit` on the
  NumPy arrays with `batch_size` (on a machine without a GPU Keras does not
  compile with XLA);
- TensorFlow with the recipe of `vib_flows.fit_settings`:
  `compile(..., **fit_settings.compile_kwargs())` (`jit_compile=True`,
  `steps_per_execution=50`) and `fit(fit_settings.training_dataset(x, y,
  batch_size=200))` (cached, shuffled, batched with `drop_remainder`,
  prefetched);
- JAX and PyTorch at their defaults (`compile_kwargs()` is empty there);
- with `--ablation`, TensorFlow and the flow model with one part of the
  recipe at a time: the tf.data input alone, with XLA, with 50 steps per
  call, and XLA with 50 steps per call on the NumPy arrays.

Prints, per case, the median over the repeats of the training steps per
second, the wall and the process CPU milliseconds per step, JAX's steps/s
over this row's, and the seconds of the first one-epoch `fit` call (tracing
and compilation included; the workers warm up one after the other, not
interleaved); then the recipe's speed-up over TensorFlow's defaults and a
provenance line (CPU, date, versions, command).
"""

import argparse
import datetime
import importlib
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

BACKENDS = ("tensorflow", "jax", "torch")
BATCH_SIZE = 200
NUM_POINTS = 2000
STEPS_PER_EPOCH = NUM_POINTS // BATCH_SIZE  # 10, whole batches either way.
MODELS = {"flow": "4 spline couplings", "mlp": "plain MLP (control)"}
# Settings: (input, `compile` keyword arguments); "recipe" stands for
# `fit_settings.compile_kwargs()`. `--ablation` adds the TensorFlow rows
# after the first two, for the flow model: one part of the recipe at a time.
SETTINGS = {
    "defaults": ("arrays", {}),
    "recipe": ("tf.data", "recipe"),
    "tf.data only": ("tf.data", {}),
    "tf.data + XLA": ("tf.data", {"jit_compile": True}),
    "tf.data + 50 steps/call": ("tf.data", {"steps_per_execution": 50}),
    "arrays + XLA + 50 steps/call": ("arrays", "recipe"),
}


def build_model(kind):
  """The density model ("flow") or its plain-MLP control ("mlp")."""
  import keras  # pylint: disable=g-import-not-at-top
  from keras import ops  # pylint: disable=g-import-not-at-top

  from vib_flows import flows  # pylint: disable=g-import-not-at-top

  x = keras.Input((2,), name="x")
  if kind == "flow":
    u, log_det = flows.make_stack("spline", 4)(x)
  else:
    u, log_det = x, 0.0
    for _ in range(4):
      u = keras.layers.Dense(64, activation="elu")(u)
      u = keras.layers.Dense(2)(u)
  log_prob = -0.5 * ops.sum(u**2, axis=-1) - math.log(2 * math.pi) + log_det
  return keras.Model(x, log_prob, name=f"moons_{kind}")


class Case:
  """One model, compiled and fed one way (a key of SETTINGS)."""

  def __init__(self, kind, settings, x_train):
    import keras  # pylint: disable=g-import-not-at-top
    from keras import ops  # pylint: disable=g-import-not-at-top

    from vib_flows import fit_settings  # pylint: disable=g-import-not-at-top

    keras.utils.set_random_seed(0)
    self.kind, self.settings = kind, settings
    self.model = build_model(kind)
    data, compile_kwargs = SETTINGS[settings]
    if compile_kwargs == "recipe":
      compile_kwargs = fit_settings.compile_kwargs()
    self.model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=lambda unused_targets, log_prob: -ops.mean(log_prob),
        **compile_kwargs)
    if data == "tf.data":
      self.fit_args = (fit_settings.training_dataset(
          x_train, x_train[:, 0], batch_size=BATCH_SIZE, seed=0),)
      self.fit_kwargs = {"shuffle": False}  # The dataset shuffles.
    else:
      self.fit_args = (x_train, x_train[:, 0])
      self.fit_kwargs = {"batch_size": BATCH_SIZE}

  @property
  def name(self):
    return f"{self.kind}|{self.settings}"

  def fit(self, epochs):
    """Trains `epochs` epochs; returns (wall s, process CPU s) per step."""
    wall, cpu = time.perf_counter(), time.process_time()
    self.model.fit(*self.fit_args, epochs=epochs, verbose=0,
                   **self.fit_kwargs)
    steps = epochs * STEPS_PER_EPOCH
    return ((time.perf_counter() - wall) / steps,
            (time.process_time() - cpu) / steps)


def worker(epochs, ablation):
  """Builds and warms up its cases, then times them at each "run" line."""
  import keras  # pylint: disable=g-import-not-at-top
  from sklearn.datasets import make_moons  # pylint: disable=g-import-not-at-top

  backend = keras.backend.backend()
  x_train = make_moons(NUM_POINTS, noise=0.05,
                       random_state=0)[0].astype("float32")
  settings = ("defaults", "recipe") if backend == "tensorflow" else (
      "defaults",)
  cases = [Case(kind, s, x_train) for kind in MODELS for s in settings]
  if ablation and backend == "tensorflow":
    cases += [Case("flow", s, x_train) for s in list(SETTINGS)[2:]]
  first = {}
  for case in cases:
    start = time.perf_counter()
    case.fit(1)
    first[case.name] = time.perf_counter() - start
    case.fit(1)
  version = getattr(importlib.import_module(backend), "__version__", "?")
  print(json.dumps({"ready": backend, "version": version,
                    "keras": keras.__version__, "first": first}), flush=True)
  for repeat, line in enumerate(sys.stdin):
    if line.strip() != "run":
      break
    shift = repeat % len(cases)
    print(json.dumps({case.name: case.fit(epochs)
                      for case in cases[shift:] + cases[:shift]}),
          flush=True)


class Worker:
  """A warmed-up worker process of one backend."""

  def __init__(self, backend, args):
    self.backend = backend
    self.stderr = tempfile.TemporaryFile("w+")  # Not a pipe: never fills.
    self.process = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--worker",
         f"--epochs={args.epochs}"] + (["--ablation"] if args.ablation else []),
        env=dict(os.environ, KERAS_BACKEND=backend), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=self.stderr, text=True)
    self.info = self._read()

  def _read(self):
    """The next JSON line of the worker; raises RuntimeError if it died."""
    for line in self.process.stdout:
      if line.startswith("{"):
        return json.loads(line)
    self.process.wait()
    self.stderr.seek(0)
    raise RuntimeError(f"{self.backend} worker failed:\n"
                       f"{self.stderr.read()[-3000:]}")

  def run(self):
    self.process.stdin.write("run\n")
    self.process.stdin.flush()
    return self._read()

  def close(self):
    self.process.stdin.close()
    self.process.wait()
    self.stderr.close()


def cpu_name():
  """The CPU's model name (/proc/cpuinfo), else what `platform` knows."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.lower().startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def report(times, workers, args):
  """Prints the table of medians, the speed-ups and the provenance."""
  wall = {key: statistics.median(t for t, _ in values)
          for key, values in times.items()}
  cpu = {key: statistics.median(c for _, c in values)
         for key, values in times.items()}
  print(f"\n{args.repeats} repeats of {args.epochs} epochs "
        f"({args.epochs * STEPS_PER_EPOCH} steps of batch {BATCH_SIZE}) per "
        "case, interleaved; medians:\n")
  print("| model | backend | settings | steps/s | ms/step | CPU ms/step "
        "| JAX steps/s / this | first epoch, s |")
  print("| --- | --- | --- | --- | --- | --- | --- | --- |")
  for kind, title in MODELS.items():
    jax = wall.get(("jax", f"{kind}|defaults"))
    rows = sorted(
        (key for key in wall if key[1].startswith(f"{kind}|")),
        key=lambda key: (BACKENDS.index(key[0]),
                         list(SETTINGS).index(key[1].split("|")[1])))
    for backend, name in rows:
      seconds = wall[(backend, name)]
      against = f"{seconds / jax:.2f}" if jax else "-"
      info = workers[backend].info
      print(f"| {title} | {backend} {info['version']} "
            f"| {name.split('|')[1]} | {1 / seconds:.1f} "
            f"| {1e3 * seconds:.2f} | {1e3 * cpu[(backend, name)]:.2f} "
            f"| {against} | {info['first'][name]:.1f} |")
  for kind, title in MODELS.items():
    defaults = wall.get(("tensorflow", f"{kind}|defaults"))
    recipe = wall.get(("tensorflow", f"{kind}|recipe"))
    if defaults and recipe:
      print(f"\nTensorFlow, {title}: the recipe is {defaults / recipe:.2f}x "
            "the defaults' steps/s.")
  versions = ", ".join(
      f"{w.backend} {w.info['version']}" for w in workers.values())
  keras_version = next(iter(workers.values())).info["keras"]
  print(f"\nProvenance: {cpu_name()}, {os.cpu_count()} CPUs, "
        f"{datetime.date.today().isoformat()}, Keras {keras_version}, "
        f"{versions}; python {' '.join(sys.argv)}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=5,
                      help="epochs per timed fit call")
  parser.add_argument("--repeats", type=int, default=5,
                      help="timed fit calls per case (medians)")
  parser.add_argument("--ablation", action="store_true",
                      help="also time each part of the recipe alone "
                      "(TensorFlow, the flow model)")
  parser.add_argument("--worker", action="store_true",
                      help="internal: a worker process (KERAS_BACKEND)")
  args = parser.parse_args()
  if args.worker:
    worker(args.epochs, args.ablation)
    return
  workers = {}
  for backend in BACKENDS:
    if importlib.util.find_spec(backend) is None:
      print(f"{backend}: not installed, skipped")
      continue
    try:
      workers[backend] = Worker(backend, args)
    except RuntimeError as error:
      print(error)
  if not workers:
    sys.exit("No backend could run.")
  times = {}
  for repeat in range(args.repeats):
    order = list(workers.values())
    for w in order if repeat % 2 == 0 else order[::-1]:
      for name, value in w.run().items():
        times.setdefault((w.backend, name), []).append(value)
  for w in workers.values():
    w.close()
  report(times, workers, args)


if __name__ == "__main__":
  main()
