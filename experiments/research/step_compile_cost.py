"""Where a digits run's first call goes: tracing, XLA compilation, a call.

Builds the README main job's run (configs/vae_digits.py) and times, in wall and
process CPU seconds, the trainer's multi-step function
(`distributed_steps.make_train_loop`): tracing it, its first call (XLA
compilation when `--xla=on`) and a second call, each of 10 steps (one digits
epoch).

    python -m experiments.research.step_compile_cost --xla=on
    python -m experiments.research.step_compile_cost --xla=off
"""

import argparse
import tempfile
import time

import tensorflow as tf

import experiments
from vib_flows.app import batch_sources
from vib_flows.app import config_files
from vib_flows.app import distributed_steps
from vib_flows.app import run_state


def _clock():
  return time.perf_counter(), time.process_time()


def _since(start):
  wall, cpu = _clock()
  return f"{wall - start[0]:.2f} s wall, {cpu - start[1]:.2f} s CPU"


def main():
  """Prints the three timings."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--xla", choices=["on", "off"], default="on")
  args = parser.parse_args()
  config = config_files.load(experiments.config_path("vae_digits"))
  config.export.enabled = False
  config.train.jit_compile = args.xla == "on"
  state = run_state.build_state(config, tempfile.mkdtemp())
  loop = distributed_steps.make_train_loop(state)
  steps = tf.constant(10)
  iterator = iter(batch_sources.epoch_dataset(state, 0))  # pylint: disable=protected-access
  start = _clock()
  loop.get_concrete_function(iterator, steps)
  print(f"trace: {_since(start)}")
  start = _clock()
  loop(iterator, steps)["loss"].numpy()
  print(f"first call (compilation with XLA): {_since(start)}")
  iterator = iter(batch_sources.epoch_dataset(state, 1))  # pylint: disable=protected-access
  start = _clock()
  loop(iterator, steps)["loss"].numpy()
  print(f"second call, 10 steps: {_since(start)}")


if __name__ == "__main__":
  main()
