r"""Seconds per training step of each estimator, measured alternately.

On a shared machine the epoch times of
experiments/research/estimator_variance.py follow the load more than the
estimator. Here both estimators' real training loops
(`distributed_steps.make_train_loop`, XLA as configured) are built first,
then timed in turns, `--steps` steps per call (one epoch's iterator each),
`--reps` calls each; the minimum over calls is the least disturbed measurement.

  python -m experiments.research.estimator_step_time \
      --configs=vae_digits,vae_synthetic_true
"""

import argparse
import os
import shutil
import tempfile
import time

import tensorflow as tf

from experiments import host
from experiments.research import estimator_variance
from vib_flows.app import batch_sources
from vib_flows.app import distributed_steps
from vib_flows.app import run_state


def _epoch(state, epoch):
  """An iterator over epoch `epoch`'s batches (made outside the timing)."""
  return iter(batch_sources.epoch_dataset(state, epoch))  # pylint: disable=protected-access


def step_seconds(config_name: str, steps: int, reps: int) -> dict:
  """{estimator: (min, median) seconds per step} over `reps` timed calls."""
  loops, workdirs = {}, []
  for estimator in estimator_variance.ESTIMATORS:
    config = estimator_variance._study_config(  # pylint: disable=protected-access
        config_name, estimator, 0, 1)
    workdirs.append(tempfile.mkdtemp(prefix="step_time_"))
    state = run_state.build_state(config, workdirs[-1])
    loop = distributed_steps.make_train_loop(state)
    loop(_epoch(state, 0), tf.constant(steps))  # Trace and compile.
    loops[estimator] = (loop, state)
  times = {e: [] for e in loops}
  for rep in range(reps):
    for estimator, (loop, state) in loops.items():
      iterator = _epoch(state, rep + 1)
      start = time.perf_counter()
      float(loop(iterator, tf.constant(steps))["count"])
      times[estimator].append((time.perf_counter() - start) / steps)
  for workdir in workdirs:
    shutil.rmtree(workdir, ignore_errors=True)
  return {e: (min(t), sorted(t)[len(t) // 2]) for e, t in times.items()}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--configs", default="vae_digits,vae_synthetic_true")
  parser.add_argument("--steps", type=int, default=10,
                      help="At most the steps of one epoch.")
  parser.add_argument("--reps", type=int, default=30)
  args = parser.parse_args(argv)
  print(host.summary(host.describe()), "load", os.getloadavg())
  for name in args.configs.split(","):
    for estimator, (best, median) in step_seconds(
        name, args.steps, args.reps).items():
      print(f"{name} {estimator}: {1e3 * best:.2f} ms/step (min), "
            f"{1e3 * median:.2f} ms/step (median)", flush=True)


if __name__ == "__main__":
  main()
