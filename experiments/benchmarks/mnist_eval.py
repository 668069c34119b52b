"""MNIST-scale importance-weighted evaluation against its generator FLOP bound.

For the VAE of configs/vae_mnist.py (`mnist.EVAL_MODEL`), on B test-shaped
binary images, it runs

    tf.function(lambda x, seed: model.log_likelihood(x, K, seed, chunk_size))

as `vib_flows.evaluate` does (chunk_size = min(eval.importance_chunk_size,
K), the model's cap of B x chunk <= models.MAX_CHUNK_ROWS rows per chunk, no
XLA), the way `evaluation` does for the smaller VAE: the peak RSS growth of
the first call (`evaluation.first_call`), then the median time of `repeats`
calls. Between
those calls, interleaved, it times the generator's forward GEMMs of one
chunk alone (the decoder 40-400-784 on B x chunk rows, `gemm.TFGemms`,
TensorFlow's kernels as the evaluation uses them):

    generator FLOPs = B K 2 (40 400 + 400 784)        (`flops.forward_gemms`)
    bound = generator FLOPs / (the GEMMs' FLOPs per second)

the least time the B K decoder passes could take at the machine's GEMM rate
for those shapes. The goal: time <= 1.5 bound. The time for the 10 000 test
images is extrapolated linearly: seconds x 10 000 / B (the evaluation runs
batches of eval.batch_size = 500 images, each the same work).

Run as a worker (`evaluation.run_worker`): python -m
experiments.benchmarks.mnist_eval '{"k": 5000, ...}' prints one JSON line
(the keys of `run_in_process`).
"""

import statistics
import sys
import time

from experiments.benchmarks import evaluation
from experiments.benchmarks import flops
from experiments.benchmarks import synthetic

GEMM_CALLS = 3  # Generator-GEMM calls timed per repeat.


def generator_widths(config):
  """[d, *decoder_hidden, 784]: the decoder's layer widths."""
  m = config.model
  return [int(m.latent_dim), *(int(w) for w in m.decoder_hidden),
          synthetic.INPUT_DIM]


def generator_flops_per_sample(widths):
  """FLOPs of one decoder pass (one row)."""
  return flops.total_flops(flops.forward_gemms(widths, 1))


def run_in_process(k, batch_size, case="mnist_vae_planar10", repeats=1,
                   seed=0, tiny=False):
  """Measures one K in this process; returns a dict (module docstring)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from experiments.benchmarks import gemm  # pylint: disable=g-import-not-at-top
  from experiments.benchmarks import mnist  # pylint: disable=g-import-not-at-top
  from vib_flows.app import model_builder  # pylint: disable=g-import-not-at-top

  config = mnist.case_config(case, jit_compile=False, tiny=tiny)
  data = mnist.splits(batch_size, binary=True, preprocess="static",
                      seed=seed, num_test=batch_size)
  model = model_builder.build_model(config, data.info)
  chunk_size = int(min(config.eval.importance_chunk_size, k))

  @tf.function(reduce_retracing=True, autograph=False)
  def log_likelihood(x, s):
    return model.log_likelihood(x, k, s, chunk_size=chunk_size)

  x = tf.constant(data.test.x[:batch_size])
  s = tf.constant([seed, 1], tf.int32)
  first = evaluation.first_call(log_likelihood, x, s)

  chunk = evaluation.chunk_samples(chunk_size, batch_size)
  rows = chunk * batch_size
  widths = generator_widths(config)
  generator = gemm.TFGemms("generator", flops.forward_gemms(widths, rows),
                           rows, jit_compile=False)
  generator.step()  # Warm-up.
  seconds, gemm_seconds = [], []
  for _ in range(max(int(repeats), 1)):  # Interleaved: GEMMs, then a call.
    start = time.perf_counter()
    for _ in range(GEMM_CALLS):
      generator.step()
    gemm_seconds.append((time.perf_counter() - start) / GEMM_CALLS)
    start = time.perf_counter()
    log_likelihood(x, s)[1].numpy()
    seconds.append(time.perf_counter() - start)
  median = statistics.median(seconds)
  gemm_rate = generator.flops / statistics.median(gemm_seconds)
  total = batch_size * k * generator_flops_per_sample(widths)
  bound = total / gemm_rate
  return {
      "k": int(k), "batch_size": int(batch_size), "case": case,
      "chunk_samples": int(chunk), "chunk_rows": int(rows),
      "seconds": median,
      "seconds_test_set": median * mnist.TEST_IMAGES / batch_size,
      "examples_per_second": batch_size / median,
      "samples_per_second": batch_size * k / median,
      "generator_flops": total,
      "generator_gflops_per_second": total / median / 1e9,
      "gemm_gflops_per_second": gemm_rate / 1e9,
      "bound_seconds": bound, **first,
  }


def run_in_subprocess(k, batch_size, case="mnist_vae_planar10", repeats=1,
                      seed=0, tiny=False, timeout=3600):
  """`run_in_process` in a fresh Python process (clean memory baseline)."""
  return evaluation.run_worker(
      "experiments.benchmarks.mnist_eval",
      {"k": k, "batch_size": batch_size, "case": case, "repeats": repeats,
       "seed": seed, "tiny": tiny}, timeout)


if __name__ == "__main__":
  evaluation.worker_main(sys.argv, run_in_process)
