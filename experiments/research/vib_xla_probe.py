"""Where the VIB step lost time under XLA: the posterior noise, and the steps.

The benchmark (`python -m experiments.benchmark --cases=vib_none,hand_vib
--xla=on`) found vib_flows' VIB training step at 0.62-0.69x the throughput of
a hand-written one (`experiments/benchmarks/handwritten_tf.py`) with XLA on, at
1.04x with XLA off. The optimized HLO of the two whole steps is the same
(the same 14 dots, layouts, copies and per-variable Adam fusions); what
differs is the fusion that draws the noise eps ~ N(0, I) [1, 128, 256]: XLA's
CPU backend fuses the seed's derivation (two `stateless_fold_in`s) and the
key/counter scrambling of `tf.random.stateless_normal` into the loop over
the 8192 Philox blocks and recomputes them for every element (889 HLO lines
in that fusion against 387 for the hand-written step, whose seed is
[constant, step]). `distributions.stateless_standard_normal` puts an XLA
optimization barrier between the key/counter and the generator: the same
numbers, computed once.

Sections (--sections, comma-separated), all timed repeat by repeat
interleaved (blocks of 10 calls; median wall and process-CPU ms per call):

  noise  drawing eps [1, 128, 256] from a seed derived as the step derives
         it: `tf.random.stateless_normal` with XLA (the old path), with the
         barrier, and without XLA;
  steps  whole training steps: the package (barrier), the package as before
         (`tf.random.stateless_normal`), the hand-written step, XLA on; and
         the package and hand-written steps with XLA off;
  parts  forward, gradients and whole step, package vs hand-written, XLA on
         and off, each on its own;
  digits the training step of configs/vib_digits.py (IAF posterior, digits
         data, offline) with XLA on and off. configs/vib_mnist.py has the
         shapes of the `steps` section (batch 100 instead of 128).

    python -m experiments.research.vib_xla_probe --sections=noise,steps
"""

import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylint: disable=g-import-not-at-top
from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

import experiments
from experiments.benchmarks import package_step
from experiments.benchmarks import runs
from experiments.benchmarks import synthetic
from vib_flows import data as data_lib
from vib_flows import distributions
from vib_flows.app import config_files

# pylint: enable=g-import-not-at-top

_REPEATS = flags.DEFINE_integer("repeats", 9, "Timed blocks of 10 calls.")
_SECTIONS = flags.DEFINE_list("sections", ["noise", "steps"],
                              "noise, steps, parts and/or digits.")


def interleaved_ms(cases, repeats):
  """{name: (fn, arg)} -> {name: (median wall ms, median CPU ms) per call}."""
  for fn, arg in cases.values():
    for _ in range(5):
      fn(arg)
  times = {name: ([], []) for name in cases}
  for _ in range(repeats):
    for name, (fn, arg) in cases.items():
      wall, cpu = time.perf_counter(), time.process_time()
      for _ in range(10):
        out = fn(arg)
      tf.nest.map_structure(lambda v: v.numpy(), out)
      times[name][0].append((time.perf_counter() - wall) * 100)
      times[name][1].append((time.process_time() - cpu) * 100)
  return {name: (float(np.median(w)), float(np.median(c)))
          for name, (w, c) in times.items()}


def report(title, results):
  print(f"== {title} (load average {os.getloadavg()[0]:.1f})")
  for name, (wall, cpu) in results.items():
    print(f"{name:34s} wall {wall:7.2f} ms   CPU {cpu:7.2f} ms", flush=True)


def old_noise(shape, seed):
  """The noise as drawn before the barrier."""
  return tf.random.stateless_normal(shape, seed=seed)


def noise_section(repeats):
  base = tf.constant([0, 0], tf.int32)
  step = tf.Variable(5, dtype=tf.int64)
  shape = [1, synthetic.BATCH_SIZE, 256]

  def draw_with(sampler):
    def draw(_):
      seed = tf.random.experimental.stateless_fold_in(
          tf.random.experimental.stateless_fold_in(base, step), 0)
      return tf.reduce_sum(sampler(shape, seed))
    return draw

  cases = {
      "stateless_normal, XLA": (tf.function(
          draw_with(old_noise), jit_compile=True), 0),
      "with barrier, XLA": (tf.function(
          draw_with(distributions.stateless_standard_normal),
          jit_compile=True), 0),
      "stateless_normal, no XLA": (tf.function(draw_with(old_noise)), 0),
  }
  report("noise [1, 128, 256]", interleaved_ms(cases, repeats))


def package(xla, splits):
  return package_step.PackageStep(
      "package", synthetic.case_config("vib_none", xla), splits,
      tempfile.mkdtemp())


def hand_batch(splits):
  batch = {"x": splits.train.x[:synthetic.BATCH_SIZE],
           "y": splits.train.y[:synthetic.BATCH_SIZE].astype("int32")}
  return batch, {k: tf.constant(v) for k, v in batch.items()}


def steps_section(repeats):
  splits = synthetic.splits(synthetic.BATCH_SIZE, seed=0)
  batch, tensors = hand_batch(splits)
  new = package(True, splits)
  new.train_step(new.batch)  # Traced with the barrier.
  patched = distributions.stateless_standard_normal
  distributions.stateless_standard_normal = old_noise
  try:
    old = package(True, splits)
    old.train_step(old.batch)  # Traced before the patch is undone.
  finally:
    distributions.stateless_standard_normal = patched
  off = package(False, splits)
  hand_on = runs._hand_runner("hand_vib", batch, True)  # pylint: disable=protected-access
  hand_off = runs._hand_runner("hand_vib", batch, False)  # pylint: disable=protected-access
  cases = {
      "package, XLA on (barrier)": (new.train_step, new.batch),
      "package, XLA on (before)": (old.train_step, old.batch),
      "hand-written, XLA on": (hand_on.train_step, tensors),
      "package, XLA off": (off.train_step, off.batch),
      "hand-written, XLA off": (hand_off.train_step, tensors),
  }
  results = interleaved_ms(cases, repeats)
  report("whole training steps", results)
  hand_wall, hand_cpu = results["hand-written, XLA on"]
  for name in ("package, XLA on (barrier)", "package, XLA on (before)"):
    wall, cpu = results[name]
    print(f"throughput {name} / hand-written XLA on: wall "
          f"{hand_wall / wall:.3f}x, CPU {hand_cpu / cpu:.3f}x")


def parts_section(repeats):
  splits = synthetic.splits(synthetic.BATCH_SIZE, seed=0)
  batch, tensors = hand_batch(splits)
  pkg = package(True, splits)
  hand = runs._hand_runner("hand_vib", batch, True)  # pylint: disable=protected-access
  model = pkg.state.model
  seed = tf.constant([0, 1], tf.int32)

  def package_forward(b):
    return tf.reduce_mean(model.per_example_loss(b, 1.0, seed, True)[0])

  def hand_forward(b):
    return hand._loss(b, tf.cast(seed, tf.int64), 1.0)  # pylint: disable=protected-access

  def gradients_of(forward, variables):
    def gradients(b):
      with tf.GradientTape() as tape:
        loss = forward(b)
      return tape.gradient(loss, variables)
    return gradients

  cases = {}
  for name, (b, forward, variables, step) in {
      "package": (pkg.batch, package_forward, model.trainable_variables,
                  pkg.train_step),
      "hand": (tensors, hand_forward, hand.variables, hand.train_step),
  }.items():
    for xla in (True, False):
      on = "on" if xla else "off"
      cases[f"{name} forward XLA {on}"] = (
          tf.function(forward, jit_compile=xla), b)
      cases[f"{name} gradients XLA {on}"] = (
          tf.function(gradients_of(forward, variables), jit_compile=xla), b)
    cases[f"{name} step XLA on"] = (step, b)
  report("parts", interleaved_ms(cases, repeats))


def digits_section(repeats):
  path = experiments.config_path("vib_digits")
  cases = {}
  for xla in (True, False):
    config = config_files.load(path)
    config.train.jit_compile = xla
    config.export.enabled = False
    splits = data_lib.load(config)
    step = package_step.PackageStep("vib_digits", config, splits,
                                    tempfile.mkdtemp())
    cases[f"vib_digits, XLA {'on' if xla else 'off'}"] = (step.train_step,
                                                         step.batch)
  report("configs/vib_digits.py training step", interleaved_ms(cases, repeats))


def main(argv):
  del argv
  sections = {"noise": noise_section, "steps": steps_section,
              "parts": parts_section, "digits": digits_section}
  for name in _SECTIONS.value:
    sections[name](_REPEATS.value)


if __name__ == "__main__":
  app.run(main)
