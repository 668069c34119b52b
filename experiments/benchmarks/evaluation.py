"""Importance-weighted evaluation `model.log_likelihood` per K: time and memory.

For each K, on one fixed batch of B examples, it runs

    tf.function(lambda x, seed: model.log_likelihood(x, K, seed, chunk_size))

as `vib_flows.app.evaluate` does (chunk_size =
min(eval.importance_chunk_size, K); the model caps B * chunk at
`models.MAX_CHUNK_ROWS`), and reports:
  seconds per call (median of repeats after one warm-up call), examples/s =
  B / seconds, samples/s = B * K / seconds, and the peak RSS growth in MiB
  during the first call: peak RSS while it runs minus RSS just before it (the
  function already traced). Each K runs in a fresh subprocess by default, so
  no allocator cache left by a larger K hides the growth of a smaller one.

`first_call` (that first call, its time and memory), `chunk_samples` and the
worker protocol (`run_worker`, `worker_main`) serve `mnist_eval` too.

Run as a worker: python -m experiments.benchmarks.evaluation '{"k": 100, ...}'
prints one JSON line (the keys of `run_in_process`).
"""

import json
import os
import subprocess
import sys
import time

from experiments.benchmarks import memory
from experiments.benchmarks import synthetic

RESULT_PREFIX = "EVAL_RESULT "


def chunk_samples(chunk_size, batch_size):
  """Samples per chunk as the model runs them (B x chunk <= MAX_CHUNK_ROWS)."""
  from vib_flows import models  # pylint: disable=g-import-not-at-top
  return max(1, min(chunk_size, models.MAX_CHUNK_ROWS // batch_size))


def first_call(log_likelihood, x, s):
  """Traces `log_likelihood(x, s)`, then times its first call and memory.

  Args:
    log_likelihood: a `tf.function` of (x, seed) -> (elbo, iw).
    x: the batch.
    s: the seed.

  Returns:
    {"first_call_seconds", "peak_growth_mib" (peak RSS during the call minus
    RSS just before it, `memory`), "rss_before_mib", "exact_peak" (whether
    the peak was reset, `memory.reset_peak`), "finite" (elbo and iw)}.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  log_likelihood.get_concrete_function(x, s)  # Trace before measuring.
  exact_peak = memory.reset_peak()
  before = memory.rss_mib()
  start = time.perf_counter()
  elbo, iw = log_likelihood(x, s)
  iw = iw.numpy()
  first = time.perf_counter() - start
  growth = memory.peak_mib() - before
  return {"first_call_seconds": first, "peak_growth_mib": growth,
          "rss_before_mib": before, "exact_peak": bool(exact_peak),
          "finite": bool(np.all(np.isfinite(iw)) and
                         np.all(np.isfinite(elbo.numpy())))}


def run_in_process(k, batch_size, case="vae_none", repeats=3, seed=0):
  """Measures one K in this process; returns a dict (see the module docstring).

  Args:
    k: number of importance samples K.
    batch_size: B, examples in the fixed batch.
    case: a VAE key of `synthetic.TRAIN_CASES` (the model's shapes).
    repeats: timed calls after the warm-up call (the median is reported).
    seed: data and weights seed.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from vib_flows.app import model_builder  # pylint: disable=g-import-not-at-top

  config = synthetic.case_config(case, jit_compile=False)
  splits = synthetic.splits(max(batch_size, 1), seed)
  model = model_builder.build_model(config, splits.info)
  chunk_size = int(min(config.eval.importance_chunk_size, k))

  @tf.function(reduce_retracing=True)
  def log_likelihood(x, s):
    return model.log_likelihood(x, k, s, chunk_size=chunk_size)

  x = tf.constant(splits.train.x[:batch_size])
  s = tf.constant([seed, 1], tf.int32)
  first = first_call(log_likelihood, x, s)
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    log_likelihood(x, s)[1].numpy()
    seconds.append(time.perf_counter() - start)
  median = (float(np.median(seconds)) if seconds
            else first["first_call_seconds"])
  chunk = chunk_samples(chunk_size, batch_size)
  return {
      "k": int(k), "batch_size": int(batch_size), "case": case,
      "chunk_samples": int(chunk), "chunk_rows": int(chunk * batch_size),
      "seconds": median, "examples_per_second": batch_size / median,
      "samples_per_second": batch_size * k / median, **first,
  }


def run_in_subprocess(k, batch_size, case="vae_none", repeats=3, seed=0,
                      timeout=1800):
  """`run_in_process` in a fresh Python process (clean memory baseline)."""
  return run_worker("experiments.benchmarks.evaluation",
                    {"k": k, "batch_size": batch_size, "case": case,
                     "repeats": repeats, "seed": seed}, timeout)


def run_worker(module, spec, timeout):
  """Runs `python -m module 'spec as JSON'` in a fresh process.

  Args:
    module: a module whose `__main__` calls `worker_main`.
    spec: the keyword arguments of its `run_in_process` (JSON-serializable).
    timeout: seconds.

  Returns:
    The dict the worker printed (after `RESULT_PREFIX`).

  Raises:
    RuntimeError: the worker printed no result (with its exit status and the
      end of its stderr).
  """
  spec_json = json.dumps(spec)
  env = dict(os.environ)
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  result = subprocess.run(
      [sys.executable, "-m", module, spec_json],
      capture_output=True, text=True, timeout=timeout, env=env, check=False)
  for line in result.stdout.splitlines():
    if line.startswith(RESULT_PREFIX):
      return json.loads(line[len(RESULT_PREFIX):])
  raise RuntimeError(
      f"Worker {module} {spec_json} failed (exit {result.returncode}):\n"
      f"{result.stderr[-3000:]}")


def worker_main(argv, run):
  """A worker's entry: runs `run(**JSON of argv[1])`, prints the result."""
  spec = json.loads(argv[1])
  print(RESULT_PREFIX + json.dumps(run(**spec)), flush=True)


if __name__ == "__main__":
  worker_main(sys.argv, run_in_process)
