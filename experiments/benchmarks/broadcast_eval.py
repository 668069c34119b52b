"""The main job's K = 1000 evaluation: context broadcast against tiled.

`model.log_likelihood` pushes z0 [S, B, d] through the amortized flow with
the encoder's context [B, C], broadcast over the S samples: each example's
flow parameters are computed once per chunk. The tiled path, the one the
models took before, flattens z0 to [S*B, d] and tiles the context to
[S*B, C], so the amortized parameters (Householder vectors, triangular
matrices) are computed S times per example. This script evaluates the test
split of configs/vae_digits.py (447 examples, K = 1000, chunks of 500, one
thread per op as the main job) both ways in one process, interleaved, with
the same weights (the model as built, flow weights set at random so that
every amortized parameter depends on the context; the time does not depend
on the values), checks that both give the same numbers, and prints the
median seconds per evaluation and their ratio; then the same for the flow
alone on one chunk of samples (the rest of the evaluation, the generator and
the likelihood of S*B points, is the same on both paths).

    python -m experiments.benchmarks.broadcast_eval [--repeats=3]
"""

import time
import types

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from configs import vae_digits
from vib_flows import data as data_lib
from vib_flows import distributions
from vib_flows import indexed_noise
from vib_flows import models
from vib_flows.app import distribute
from vib_flows.app import model_builder
from vib_flows.flows import testing

_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls of each path.")


def tiled_latent_samples(self, loc, scale, context, num_samples, seed,
                         stop_gradient=False, example_index=None,
                         first_sample=0):
  """`LatentVariableModel._latent_samples` with the context tiled S times."""
  del stop_gradient  # Evaluation only.
  if example_index is None:
    z0 = distributions.sample_diagonal_gaussian(loc, scale, num_samples, seed)
  else:
    eps = indexed_noise.normal(seed, example_index,
                               first_sample + tf.range(num_samples),
                               self.latent_dim)
    z0 = loc + scale * eps
  samples = {"z0": z0,
             "log_q0": distributions.diagonal_gaussian_log_prob(z0, loc, scale)}
  z0 = samples["z0"]
  shape = tf.shape(z0)
  flat = tf.reshape(z0, [-1, self.latent_dim])
  context = tf.tile(context, [shape[0], 1])  # [S*B, C], row s * B + b.
  zk, log_det = self.flow(flat, context=context)
  samples["zk"] = tf.cast(zk, tf.float32)
  samples["log_det"] = tf.reshape(tf.cast(log_det, tf.float32), shape[:2])
  return samples


def main(argv):  # noqa: D103
  del argv
  config = vae_digits.get_config()
  distribute.configure_devices(config.runtime)
  splits = data_lib.load(config)
  model = model_builder.build_model(config, splits.info)
  model.build()
  testing.randomize_weights(model.flow, scale=0.1, seed=0)
  k = int(config.eval.num_importance_samples)
  chunk = int(min(config.eval.importance_chunk_size, k))
  x = tf.constant(splits.test.x, tf.float32)
  index = tf.range(tf.shape(x)[0])
  seed = tf.constant([0, 1], tf.int32)

  def make(tiled):
    @tf.function(autograph=False)
    def log_likelihood():
      if tiled:  # The patch is read when the function is traced.
        model._latent_samples = types.MethodType(  # pylint: disable=protected-access
            tiled_latent_samples, model)
      try:
        return model.log_likelihood(x, k, seed, chunk_size=chunk,
                                    example_index=index)
      finally:
        if tiled:
          del model._latent_samples  # pylint: disable=protected-access
    return log_likelihood

  functions = {"broadcast": make(False), "tiled": make(True)}
  results = {name: [t.numpy() for t in fn()]  # Traces and warms up.
             for name, fn in functions.items()}
  for a, b, what in zip(results["broadcast"], results["tiled"],
                        ("elbo", "iw log-likelihood")):
    print(f"{what}: mean {a.mean():.6f} (broadcast) {b.mean():.6f} (tiled), "
          f"max |difference| per example {np.max(np.abs(a - b)):.3g}")
  seconds = {name: [] for name in functions}
  for _ in range(_REPEATS.value):
    for name, fn in functions.items():  # Interleaved.
      start = time.perf_counter()
      fn()[1].numpy()
      seconds[name].append(time.perf_counter() - start)
  median = {name: float(np.median(s)) for name, s in seconds.items()}
  for name, s in seconds.items():
    print(f"{name}: median {median[name]:.2f} s per evaluation "
          f"({', '.join(f'{t:.2f}' for t in s)})")
  print(f"tiled / broadcast: {median['tiled'] / median['broadcast']:.2f}x")
  # The flow alone on one chunk, z0 [S, B, d] (S as log_likelihood chunks).
  s = max(1, min(chunk, models.MAX_CHUNK_ROWS // int(x.shape[0])))
  _, _, context = model._encode_params(x)  # pylint: disable=protected-access
  z0 = tf.random.stateless_normal([s, x.shape[0], model.latent_dim], seed)
  flow_functions = {
      "broadcast": tf.function(lambda: model.flow(z0, context=context)),
      "tiled": tf.function(lambda: model.flow(
          tf.reshape(z0, [-1, model.latent_dim]),
          context=tf.tile(context, [s, 1]))),
  }
  flow_seconds = {name: [] for name in flow_functions}
  for fn in flow_functions.values():
    fn()
  for _ in range(10 * _REPEATS.value):
    for name, fn in flow_functions.items():
      start = time.perf_counter()
      fn()[1].numpy()
      flow_seconds[name].append(time.perf_counter() - start)
  flow_median = {n: float(np.median(t)) for n, t in flow_seconds.items()}
  print(f"the flow alone on z0 [{s}, {x.shape[0]}, {model.latent_dim}]: "
        f"{1e3 * flow_median['broadcast']:.1f} ms (broadcast), "
        f"{1e3 * flow_median['tiled']:.1f} ms (tiled), "
        f"{flow_median['tiled'] / flow_median['broadcast']:.2f}x")


if __name__ == "__main__":
  app.run(main)
