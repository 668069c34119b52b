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

  from vib_flows import models  # pylint: disable=g-import-not-at-top
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
  log_likelihood.get_concrete_function(x, s)  # Trace before measuring.
  exact_peak = memory.reset_peak()
  before = memory.rss_mib()
  start = time.perf_counter()
  elbo, iw = log_likelihood(x, s)
  iw = iw.numpy()
  first = time.perf_counter() - start
  growth = memory.peak_mib() - before
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    log_likelihood(x, s)[1].numpy()
    seconds.append(time.perf_counter() - start)
  median = float(np.median(seconds)) if seconds else first
  chunk = max(1, min(chunk_size, models.MAX_CHUNK_ROWS // batch_size))
  return {
      "k": int(k), "batch_size": int(batch_size), "case": case,
      "chunk_samples": int(chunk), "chunk_rows": int(chunk * batch_size),
      "seconds": median, "first_call_seconds": first,
      "examples_per_second": batch_size / median,
      "samples_per_second": batch_size * k / median,
      "peak_growth_mib": growth, "rss_before_mib": before,
      "exact_peak": bool(exact_peak),
      "finite": bool(np.all(np.isfinite(iw)) and
                     np.all(np.isfinite(elbo.numpy()))),
  }


def run_in_subprocess(k, batch_size, case="vae_none", repeats=3, seed=0,
                      timeout=1800):
  """`run_in_process` in a fresh Python process (clean memory baseline)."""
  spec = json.dumps({"k": k, "batch_size": batch_size, "case": case,
                     "repeats": repeats, "seed": seed})
  env = dict(os.environ)
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  result = subprocess.run(
      [sys.executable, "-m", "experiments.benchmarks.evaluation", spec],
      capture_output=True, text=True, timeout=timeout, env=env, check=False)
  for line in result.stdout.splitlines():
    if line.startswith(RESULT_PREFIX):
      return json.loads(line[len(RESULT_PREFIX):])
  raise RuntimeError(
      f"Evaluation worker for K={k} failed (exit {result.returncode}):\n"
      f"{result.stderr[-3000:]}")


def main(argv):
  """Runs one case in this process: argv[1] is its JSON spec; prints result."""
  spec = json.loads(argv[1])
  print(RESULT_PREFIX + json.dumps(run_in_process(**spec)), flush=True)


if __name__ == "__main__":
  main(sys.argv)
