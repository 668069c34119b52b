"""Where the VIB step loses time under XLA: its parts, package vs hand-written.

The benchmark (`python -m vib_flows.benchmark --cases=vib_none,hand_vib
--xla=on`) finds vib_flows' VIB training step at about 0.69x the throughput of
a hand-written one (`vib_flows/benchmarks/handwritten.py`) with XLA on, and at
1.04x with XLA off. This probe times, on the benchmark's shapes (encoder
784-1024-1024, latent 256, batch 128), each part as its own `tf.function`,
with XLA on and off:

  forward    the per-example loss, averaged;
  gradients  forward + `tf.GradientTape` gradients (returned);
  step       the whole training step (package: `train.make_train_step`).

Prints the median ms per call of each (--repeats blocks of 10 calls).

    python research/vib_xla_probe.py
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

from vib_flows.benchmarks import package_step
from vib_flows.benchmarks import runs
from vib_flows.benchmarks import synthetic
# pylint: enable=g-import-not-at-top

_REPEATS = flags.DEFINE_integer("repeats", 9, "Timed blocks of 10 calls.")


def median_ms(fn, arg, repeats):
  for _ in range(5):
    out = fn(arg)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(10):
      out = fn(arg)
    tf.nest.map_structure(lambda v: v.numpy(), out)
    times.append((time.perf_counter() - start) * 100)  # ms per call.
  return float(np.median(times))


def main(argv):
  del argv
  splits = synthetic.splits(synthetic.BATCH_SIZE, seed=0)
  package = package_step.PackageStep(
      "package", synthetic.case_config("vib_none", True), splits,
      tempfile.mkdtemp())
  batch = {"x": splits.train.x[:synthetic.BATCH_SIZE],
           "y": splits.train.y[:synthetic.BATCH_SIZE].astype("int32")}
  hand = runs._hand_runner("hand_vib", batch, True)  # pylint: disable=protected-access
  model = package.state.model
  seed = tf.constant([0, 1], tf.int32)

  def package_forward(b):
    return tf.reduce_mean(model.per_example_loss(b, 1.0, seed, True)[0])

  def hand_forward(b):
    return hand._loss(b, tf.cast(seed, tf.int64))  # pylint: disable=protected-access

  def gradients_of(forward, variables):
    def gradients(b):
      with tf.GradientTape() as tape:
        loss = forward(b)
      return tape.gradient(loss, variables)
    return gradients

  hand_batch = {k: tf.constant(v) for k, v in batch.items()}
  parts = {
      "package": (package.batch, package_forward, model.trainable_variables,
                  package.train_step),
      "hand": (hand_batch, hand_forward, hand.variables, hand.train_step),
  }
  for name, (b, forward, variables, step) in parts.items():
    for xla in (True, False):
      for part, fn in (("forward", forward),
                       ("gradients", gradients_of(forward, variables))):
        ms = median_ms(tf.function(fn, jit_compile=xla), b, _REPEATS.value)
        print(f"{name:8s} {part:9s} xla={'on ' if xla else 'off'} {ms:6.2f} ms",
              flush=True)
    ms = median_ms(step, b, _REPEATS.value)
    print(f"{name:8s} {'step':9s} xla=on  {ms:6.2f} ms", flush=True)


if __name__ == "__main__":
  app.run(main)
