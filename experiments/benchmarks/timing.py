"""Warm-up, interleaved repeats and medians of step timings.

A runner is any object with `name`, `examples_per_step` and `step()`; `step()`
runs one step and waits for its result (as the trainer does when it reads the
step's sums). All runners of one comparison are timed round-robin, repeat by
repeat, so a change of load on a shared machine hits every case alike and
the ratios between them stay meaningful.
"""

import dataclasses
import statistics
import time


@dataclasses.dataclass
class Timing:
  """Wall-clock seconds of each repeat of `steps` steps of one runner."""

  name: str
  examples_per_step: int
  steps: int
  seconds: list
  cpu_seconds: list = dataclasses.field(default_factory=list)

  @property
  def median_seconds(self):
    """Median over repeats of the time of `steps` steps, seconds."""
    return statistics.median(self.seconds)

  @property
  def ms_per_step(self):
    """Median milliseconds per step."""
    return 1e3 * self.median_seconds / self.steps

  @property
  def examples_per_second(self):
    """Examples per second from the median repeat."""
    return self.examples_per_step * self.steps / self.median_seconds

  @property
  def best_ms_per_step(self):
    """Fastest repeat, milliseconds per step (least disturbed by other load)."""
    return 1e3 * min(self.seconds) / self.steps

  @property
  def cpu_ms_per_step(self):
    """Median process CPU milliseconds per step.

    All threads; less sensitive than wall time to other processes sharing the
    cores.
    """
    if not self.cpu_seconds:
      return None
    return 1e3 * statistics.median(self.cpu_seconds) / self.steps

  @property
  def spread(self):
    """(max - min) / median over repeats: how noisy the repeats were."""
    return (max(self.seconds) - min(self.seconds)) / self.median_seconds


def measure(runners, steps, repeats, warmup):
  """Times `runners` round-robin; returns {name: Timing}.

  Args:
    runners: objects with `name`, `examples_per_step`, `step()`.
    steps: steps per repeat.
    repeats: timed repeats per runner (the median is reported).
    warmup: untimed steps per runner first (tracing, XLA compilation, tf.data
      buffers).
  """
  for runner in runners:
    for _ in range(warmup):
      runner.step()
  seconds = {runner.name: [] for runner in runners}
  cpu = {runner.name: [] for runner in runners}
  for r in range(repeats):
    shift = r % len(runners)  # Rotate the order: no runner is always first.
    for runner in runners[shift:] + runners[:shift]:
      start, start_cpu = time.perf_counter(), time.process_time()
      for _ in range(steps):
        runner.step()
      seconds[runner.name].append(time.perf_counter() - start)
      cpu[runner.name].append(time.process_time() - start_cpu)
  return {
      runner.name: Timing(runner.name, runner.examples_per_step, steps,
                          seconds[runner.name], cpu[runner.name])
      for runner in runners
  }
