r"""CPU time per training epoch of configs/sylvester_mnist.py's model.

The model of van den Berg et al. 2018 (gated convolutional encoder and decoder,
16 amortized orthogonal Sylvester flows, latent 64), trained by the package's
trainer (`run_state.build_state`, `distributed_steps.make_train_loop`, XLA as
configured) on random binary MNIST-sized data: 60 000 images of 28x28x1
(Bernoulli(0.13) pixels, about MNIST's mean), of which the config holds out
10 000 for validation. The compute of a step does not depend on the pixel
values, so random data time the same as MNIST.

After one call that traces and compiles, `--reps` calls of `--steps` steps
(batch 100) are timed; seconds per step times 500 (50 000 / 100) is the
epoch. The minimum over calls is the least disturbed by other processes; the
median is printed too, with the machine's CPU, its load and the date.

  python -m experiments.research.gated_conv_epoch_time [--steps=20 --reps=3]
"""

import argparse
import datetime
import os
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf

import experiments
from experiments import host
from vib_flows.app import batch_sources
from vib_flows.app import config_files
from vib_flows.app import distributed_steps
from vib_flows.app import run_state

TRAIN_IMAGES = 60_000
TEST_IMAGES = 1_000


def write_random_mnist(path: str, seed: int = 0) -> None:
  """An .npz of random binary 28x28x1 images (bool: 2 levels)."""
  rng = np.random.default_rng(seed)
  np.savez(path,
           x_train=rng.random((TRAIN_IMAGES, 28, 28, 1)) < 0.13,
           x_test=rng.random((TEST_IMAGES, 28, 28, 1)) < 0.13)


def epoch_seconds(config_name: str, steps: int, reps: int,
                  jit_compile: bool) -> dict:
  """Seconds per step and per 50 000-image epoch: min and median of calls."""
  tmp = tempfile.mkdtemp(prefix="gated_conv_epoch_time_")
  try:
    data = os.path.join(tmp, "random_mnist.npz")
    write_random_mnist(data)
    config = config_files.load(experiments.config_path(config_name))
    config.data.name = "npz:" + data
    config.train.jit_compile = jit_compile
    config.export.enabled = False
    state = run_state.build_state(config, os.path.join(tmp, "workdir"))
    steps_per_epoch = state.splits.train.num_examples // (
        config.train.batch_size)
    loop = distributed_steps.make_train_loop(state)
    iterator = iter(batch_sources.epoch_dataset(state, 0))  # pylint: disable=protected-access
    start = time.perf_counter()
    float(loop(iterator, tf.constant(2))["count"])  # Trace and compile.
    compile_seconds = time.perf_counter() - start
    times = []
    for _ in range(reps):
      start = time.perf_counter()
      sums = loop(iterator, tf.constant(steps))
      loss = float(sums["loss"]) / float(sums["count"])
      times.append((time.perf_counter() - start) / steps)
    if not np.isfinite(loss):
      raise FloatingPointError(f"Non-finite training loss {loss}.")
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  best, median = min(times), sorted(times)[len(times) // 2]
  return {"steps_per_epoch": steps_per_epoch,
          "compile_seconds": compile_seconds,
          "step_seconds": (best, median),
          "epoch_seconds": (best * steps_per_epoch, median * steps_per_epoch),
          "last_loss": loss}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="sylvester_mnist")
  parser.add_argument("--steps", type=int, default=20,
                      help="Steps per timed call.")
  parser.add_argument("--reps", type=int, default=3, help="Timed calls.")
  parser.add_argument("--no_xla", action="store_true",
                      help="Train without XLA (train.jit_compile=False).")
  args = parser.parse_args(argv)
  info = host.describe()
  print(f"{datetime.datetime.now().isoformat(timespec='seconds')}; "
        f"{host.summary(info)}; load average {info['load_average']}",
        flush=True)
  result = epoch_seconds(args.config, args.steps, args.reps, not args.no_xla)
  best, median = result["epoch_seconds"]
  step_best, step_median = result["step_seconds"]
  print(f"configs/{args.config}.py, XLA {'off' if args.no_xla else 'on'}, "
        f"batch 100: {step_best:.3f} s/step (min of {args.reps} calls of "
        f"{args.steps} steps), {step_median:.3f} s/step (median); "
        f"compile {result['compile_seconds']:.0f} s; last loss "
        f"{result['last_loss']:.1f}")
  print(f"one epoch ({result['steps_per_epoch']} steps): {best / 60:.1f} min "
        f"(min), {median / 60:.1f} min (median); load average after "
        f"{list(os.getloadavg())}", flush=True)


if __name__ == "__main__":
  main()
