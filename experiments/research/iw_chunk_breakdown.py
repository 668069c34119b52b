"""Where a chunk of the MNIST-scale importance-weighted evaluation goes.

For the planar VAE of the MNIST benchmark (`mnist.EVAL_MODEL`:
configs/vae_mnist.py, 784-400-40, 10 amortized planar maps) on B = 500
binary test-shaped images and K = 160 samples, one process, the cases
interleaved repeat by repeat (medians, ms for all K samples):

  log_likelihood            `model.log_likelihood` as the evaluation runs it
                            (`tf.function`, no XLA, chunks of 16 samples =
                            8 000 rows, `vae.MAX_CHUNK_ROWS`)
  log_likelihood, N rows    the same with chunks of N rows
  generator                 the decoder's Dense layers on a chunk's rows,
                            K / 16 times
  generator + log p(x|z)    the same and the Bernoulli log-density of the
                            784 pixels of every row
  latent samples            `_latent_samples` of a chunk (the counter-based
                            noise and the flows), K / 16 times
  GEMMs alone               the decoder's forward matrix products of a chunk
                            (`tf.matmul`, no bias, no activation), K / 16
                            times: the FLOP bound's rate
  chunk body, XLA off / on  one chunk's log-weights and log-sum-exp (latent
                            samples, decoder, log-densities) as its own
                            `tf.function`, without and with `jit_compile`,
                            called K / 16 times

    python -m experiments.research.iw_chunk_breakdown [--repeats=7]

Used in docs/performance.md ("Importance-weighted evaluation at MNIST
scale").
"""

import argparse
import os
import statistics
import time

import tensorflow as tf

from experiments.benchmarks import mnist
from vib_flows import objectives
from vib_flows.app import model_builder

BATCH = 500
SAMPLES = 160
CHUNK = 16  # Samples per chunk: 8 000 rows, the evaluation's cap.


def _cases(model, x, seed):
  """The cases: name -> a callable doing the case's work once, in sync."""
  loc, scale, context = model._encode_params(x)  # pylint: disable=protected-access
  index = tf.range(BATCH)
  rows = CHUNK * BATCH
  z = tf.random.normal([rows, int(model.latent_dim)], seed=1)
  x_rows = tf.tile(x, [CHUNK, 1])
  repeats = SAMPLES // CHUNK

  def log_likelihood(chunk_rows):
    samples = chunk_rows // BATCH
    fn = tf.function(lambda x, s: model.log_likelihood(
        x, SAMPLES, s, chunk_size=samples, max_chunk_rows=chunk_rows),
                     autograph=False)
    return lambda: fn(x, seed)[1].numpy()

  generator = tf.function(model.generator, autograph=False)
  with_density = tf.function(
      lambda z: model.likelihood.log_prob(model.generator(z), x_rows),
      autograph=False)
  latent = tf.function(lambda s: model._latent_samples(  # pylint: disable=protected-access
      loc, scale, context, CHUNK, s, example_index=index)["zk"],
                       autograph=False)
  kernels = [w for w in model.generator.trainable_weights if w.shape.rank == 2]
  gemms = tf.function(lambda z: _chain(z, kernels), autograph=False)

  def body(jit):
    @tf.function(autograph=False, jit_compile=jit)
    def chunk(i):
      samples = model._latent_samples(  # pylint: disable=protected-access
          loc, scale, context, CHUNK, seed, example_index=index,
          first_sample=i * CHUNK)
      log_px = model._log_px(x, samples["zk"], CHUNK)  # pylint: disable=protected-access
      log_pz = tf.reshape(model.prior.log_prob(samples["zk"]), [CHUNK, -1])
      log_w = objectives.log_importance_weights(
          log_px, log_pz, samples["log_q0"], samples["log_det"])
      return tf.reduce_logsumexp(log_w, 0)
    return lambda: [chunk(tf.constant(i)).numpy() for i in range(repeats)]

  def times(fn, arg):
    return lambda: [fn(arg).numpy() for _ in range(repeats)]

  return {
      "log_likelihood (8 000-row chunks)": log_likelihood(8000),
      "log_likelihood, 4 000-row chunks": log_likelihood(4000),
      "log_likelihood, 2 000-row chunks": log_likelihood(2000),
      "log_likelihood, 1 000-row chunks": log_likelihood(1000),
      "generator": times(generator, z),
      "generator + log p(x|z)": times(with_density, z),
      "latent samples (noise, flows)": times(latent, seed),
      "GEMMs alone": times(gemms, z),
      "chunk body, XLA off": body(False),
      "chunk body, XLA on": body(True),
  }


def _chain(z, kernels):
  for kernel in kernels:
    z = tf.matmul(z, kernel)
  return z


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=7)
  args = parser.parse_args()
  config = mnist.case_config(mnist.EVAL_MODEL, jit_compile=False)
  data = mnist.splits(BATCH, binary=True, preprocess="static", seed=0,
                      num_test=BATCH)
  model = model_builder.build_model(config, data.info)
  x = tf.constant(data.test.x[:BATCH])
  seed = tf.constant([0, 1], tf.int32)
  cases = _cases(model, x, seed)
  load = os.getloadavg()
  for fn in cases.values():  # Warm-up: traces and compiles.
    fn()
  seconds = {name: [] for name in cases}
  for _ in range(args.repeats):
    for name, fn in cases.items():
      start = time.perf_counter()
      fn()
      seconds[name].append(time.perf_counter() - start)
  total = statistics.median(seconds["log_likelihood (8 000-row chunks)"])
  print(f"B = {BATCH}, K = {SAMPLES}, medians of {args.repeats} repeats\n")
  print("| case | ms | / log_likelihood |")
  print("|---|---|---|")
  for name, values in seconds.items():
    median = statistics.median(values)
    print(f"| {name} | {1000 * median:.1f} | {median / total:.2f} |")
  print(f"\nLoad average at the start {load[0]:.2f}, at the end "
        f"{os.getloadavg()[0]:.2f}; {time.strftime('%Y-%m-%d %H:%M %Z')}")


if __name__ == "__main__":
  main()
