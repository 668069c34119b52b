"""How eval.batch_size sets the cost of the importance-weighted evaluation.

`VAE.log_likelihood` draws K samples per image in chunks of at most
`MAX_CHUNK_ROWS` = 8192 rows (images x samples), so a batch of B images runs
K B / 8192 chunks. Every chunk pushes its samples through the flows, and an
amortized flow recomputes its per-image parameters from the context there:
for the orthogonal Sylvester flows that is one thin QR decomposition per
image and flow. Over N images that is N K B / 8192 QRs, proportional to B,
while the decoder's work per sample does not depend on B. This times
`log_likelihood` on the same 500 binary images with K = 320 for batches of
B images (medians over repeats, the batch sizes interleaved repeat by
repeat), for the MNIST VAE without a flow, with 10 planar maps and with 4
orthogonal Sylvester flows (`experiments.benchmarks.mnist.STEP_CASES`):

    python -m experiments.research.eval_batch_size [--repeats=5]

The estimates themselves do not depend on B (each image's noise is indexed
by the image and the sample, `indexed_noise`); configs/vae_mnist.py takes
its eval.batch_size from this.
"""

import argparse
import os
import statistics
import time

import tensorflow as tf

from experiments.benchmarks import mnist
from vib_flows.app import model_builder

IMAGES = 500
SAMPLES = 320
BATCH_SIZES = (500, 100, 50)
# (label, `mnist.STEP_CASES` key, number of flows: None keeps the case's).
MODELS = (("no flow", "mnist_vae_planar10", 0),
          ("planar K = 10", "mnist_vae_planar10", None),
          ("orthogonal Sylvester, 4 flows", "mnist_vae_sylvester", None))


def _timer(model, x, batch_size, seed):
  """A callable that evaluates the IMAGES images in batches, in sync."""
  fn = tf.function(lambda x, i: model.log_likelihood(
      x, SAMPLES, seed, chunk_size=SAMPLES, example_index=i),
                   autograph=False)
  batches = [(x[i:i + batch_size], tf.range(i, i + batch_size))
             for i in range(0, IMAGES, batch_size)]
  return lambda: [fn(xb, ib)[1].numpy() for xb, ib in batches]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  data = mnist.splits(IMAGES, binary=True, preprocess="static", seed=0,
                      num_test=IMAGES)
  x = tf.constant(data.test.x[:IMAGES])
  seed = tf.constant([0, 1], tf.int32)
  cases = {}
  for label, case, num_flows in MODELS:
    config = mnist.case_config(case, jit_compile=False)
    if num_flows is not None:
      config.flow.num_flows = num_flows
    model = model_builder.build_model(config, data.info)
    for batch_size in BATCH_SIZES:
      cases[(label, batch_size)] = _timer(model, x, batch_size, seed)
  load = os.getloadavg()
  for fn in cases.values():  # Warm-up: traces.
    fn()
  seconds = {key: [] for key in cases}
  for _ in range(args.repeats):
    for key, fn in cases.items():
      start = time.perf_counter()
      fn()
      seconds[key].append(time.perf_counter() - start)
  print(f"{IMAGES} images, K = {SAMPLES}, medians of {args.repeats} "
        "repeats, seconds\n")
  print("| model | " + " | ".join(f"B = {b}" for b in BATCH_SIZES) + " |")
  print("|---" * (len(BATCH_SIZES) + 1) + "|")
  for label, _, _ in MODELS:
    cells = [f"{statistics.median(seconds[(label, b)]):.2f}"
             for b in BATCH_SIZES]
    print(f"| {label} | " + " | ".join(cells) + " |")
  print(f"\nLoad average at the start {load[0]:.2f}, at the end "
        f"{os.getloadavg()[0]:.2f}; {time.strftime('%Y-%m-%d %H:%M %Z')}")


if __name__ == "__main__":
  main()
