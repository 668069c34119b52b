"""Where a digits training step spends its time: TensorFlow's profiler, per op.

Builds the README main job's run (configs/vae_digits.py, with its thread
settings) without its flow and with the standard normal prior (the JAX
reference's model), runs one epoch of the trainer's own multi-step loop (as
`epoch_loop.train` runs it: batches gathered inside the loop) to trace it, then
profiles 30 steps and prints, for each profiler thread, the total time
and the ops or XLA thunks that took the most. A second part times the
decoder's largest fused Adamax update (its 256 x 1088 output kernel) alone,
in a tf.function loop, for comparison with its time inside the step.

  python -m experiments.research.digits_step_profile [--xla]

Run on a quiet machine: the profiler's own overhead is large without XLA
(hundreds of ops per step), so compare ops with each other, not with the
unprofiled step time.
"""

import argparse
import collections
import glob
import tempfile
import time

import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from experiments.benchmarks import whole_run
from vib_flows.app import batch_sources
from vib_flows.app import distribute
from vib_flows.app import run_state

STEPS = 30


def profile_steps(xla):
  """Profiles STEPS steps of the trainer's loop; prints the busiest ops."""
  config = whole_run.run_config(no_flow=True, seed=0, xla=xla)
  distribute.configure_devices(config.runtime)  # Its threads, as the job's.
  state = run_state.build_state(config, tempfile.mkdtemp())
  steps = batch_sources.batch_source(state)
  steps_per_epoch = state.splits.train.x.shape[0] // config.train.batch_size
  steps.start(0, 0)
  float(steps.run(steps_per_epoch)["loss"])  # Traces the loop.
  logdir = tempfile.mkdtemp()
  steps.start(1, 0)
  tf.profiler.experimental.start(logdir)
  start = time.perf_counter()
  float(steps.run(STEPS)["loss"])
  seconds = time.perf_counter() - start
  tf.profiler.experimental.stop()
  print(f"{STEPS} steps under the profiler: {seconds / STEPS * 1e3:.2f} "
        f"ms per step (XLA {'on' if xla else 'off'})")
  path = glob.glob(logdir + "/**/*.xplane.pb", recursive=True)[0]
  space = xplane_pb2.XSpace()
  with open(path, "rb") as f:
    space.ParseFromString(f.read())
  for plane in space.planes:
    names = {k: v.name for k, v in plane.event_metadata.items()}
    for line in plane.lines:
      total, count = collections.Counter(), collections.Counter()
      for event in line.events:
        name = names.get(event.metadata_id, "?")
        total[name] += event.duration_ps / 1e9
        count[name] += 1
      if sum(total.values()) < 1.0:
        continue
      print(f"== {plane.name} / {line.name}")
      for name, ms in total.most_common(15):
        print(f"  {ms:8.2f} ms  n={count[name]:5d}  {name[:90]}")


def time_largest_update(repeats=500):
  """Milliseconds per ResourceApplyAdaMax on a 256 x 1088 weight, in a loop."""
  shape = (256, 1088)
  var = tf.Variable(tf.random.normal(shape))
  m = tf.Variable(tf.zeros(shape))
  v = tf.Variable(tf.zeros(shape))
  grad = tf.random.normal(shape)

  def f32(x):
    return tf.constant(x, tf.float32)

  @tf.function
  def updates(n):
    for _ in tf.range(n):
      tf.raw_ops.ResourceApplyAdaMax(
          var=var.handle, m=m.handle, v=v.handle, beta1_power=f32(0.5),
          lr=f32(3e-3), beta1=f32(0.9), beta2=f32(0.999), epsilon=f32(1e-7),
          grad=grad)
    return var[0, 0]

  updates(tf.constant(10)).numpy()
  start = time.perf_counter()
  updates(tf.constant(repeats)).numpy()
  ms = (time.perf_counter() - start) / repeats * 1e3
  print(f"ResourceApplyAdaMax on a {shape} weight alone: {ms:.3f} ms per call")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--xla", action="store_true",
                      help="Profile the XLA-compiled step.")
  args = parser.parse_args()
  profile_steps(args.xla)
  time_largest_update()


if __name__ == "__main__":
  main()
