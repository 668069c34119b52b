"""The variational autoencoder with a flow posterior.

    loss = E_q[-log p(x|zK)] + beta * E_q[log qK(zK|x) - log p(zK)]
                        (Kingma & Welling 2014; Rezende & Mohamed 2015)

and its importance-weighted log-likelihood (Burda et al. 2016).
"""

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from vib_flows import distributions
from vib_flows import flows
from vib_flows import networks
from vib_flows import objectives
from vib_flows.models.latent import LatentVariableModel
from vib_flows.models.latent import SampleCounts
from vib_flows.models.latent import Signature

MAX_CHUNK_ROWS = 8192  # log_likelihood: examples x samples per chunk, at most.


@keras.saving.register_keras_serializable(package="vib_flows")
class VAE(LatentVariableModel):
  """Variational autoencoder with a flow posterior (see the module docstring).

  Args:
    likelihood: `distributions.Likelihood` of x given the decoder output.
    decoder: `networks.MLP` with `likelihood.num_params` outputs.
    (other args: `LatentVariableModel`.)
  """

  term_names = ("loss", "elbo", "reconstruction", "kl")
  models_inputs = True
  serving_signatures = {
      "encode": Signature("x"), "decode": Signature("z"),
      "log_likelihood": Signature("x", limit_rows=True, in_support=True)}
  layer_arguments = LatentVariableModel.layer_arguments + (
      "decoder", "likelihood")

  def __init__(self, data_shape: Sequence[int], encoder: networks.Encoder,
               flow: flows.FlowStack | None, decoder: keras.layers.Layer,
               prior: distributions.Prior,
               likelihood: distributions.Likelihood, **kwargs: Any):
    kwargs.setdefault("name", "vae")
    super().__init__(data_shape, encoder, flow, decoder, prior, likelihood,
                     **kwargs)
    self.likelihood = likelihood
    self.build((None,) + self.data_shape)

  @property
  def decoder(self) -> keras.layers.Layer:
    """The generator: zK [N, d] -> likelihood parameters [N, num_params]."""
    return self.generator

  def _log_px(self, x: tf.Tensor, zk: tf.Tensor,
              num_samples: int | tf.Tensor) -> tf.Tensor:
    """Log p(x|zK) [S, B] for flat zK [S*B, d] and x [B, ...]."""
    params = self.generator(zk)
    reps = tf.concat([[num_samples], tf.ones([tf.rank(x) - 1], tf.int32)], 0)
    x_rep = tf.tile(x, reps)  # Row s * B + b holds x_b.
    log_px = self.likelihood.log_prob(params, x_rep)
    return tf.reshape(log_px, [num_samples, -1])

  def per_example_loss(
      self, batch: dict[str, tf.Tensor], beta: float | tf.Tensor,
      seed: tf.Tensor, training: bool = False,
      example_index: tf.Tensor | None = None,
  ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """Negative ELBO (with KL weight beta) per example.

    Args:
      batch: {"x": [B, *data_shape] float32}.
      beta: scalar KL weight.
      seed: int tensor [2].
      training: update the score-function baseline (and layers' training mode).
      example_index: optional [B] integer indices; each example's noise then
        depends only on (seed, its index) (see `_latent_samples`).

    Returns:
      surrogate [B] float32 (== terms["loss"] for the pathwise estimator) and
      terms {"loss", "elbo", "reconstruction", "kl"}, each [B] float32 nats:
      reconstruction = mean_s log p(x|zK_s), kl = closed form or
      mean_s [log qK(zK_s|x) - log p(zK_s)], elbo = reconstruction - kl,
      loss = -reconstruction + beta * kl.
    """
    x = tf.cast(batch["x"], tf.float32)
    beta = tf.cast(beta, tf.float32)
    samples, kl, kl_s = self._loss_samples(x, seed, training, example_index)
    log_px = self._log_px(x, samples["zk"], self.num_samples)
    reconstruction = tf.reduce_mean(log_px, axis=0)
    loss = objectives.negative_elbo(reconstruction, kl, beta)
    surrogate = self._surrogate(-log_px, kl, kl_s, beta, samples["log_q0"],
                                training)
    elbo = -objectives.negative_elbo(reconstruction, kl)  # beta = 1.
    terms = {"loss": loss, "elbo": elbo,
             "reconstruction": reconstruction, "kl": kl}
    return surrogate, terms

  def log_likelihood(
      self, x: tf.Tensor, num_samples: int | tf.Tensor, seed: tf.Tensor,
      chunk_size: int | tf.Tensor = 500,
      max_chunk_rows: int = MAX_CHUNK_ROWS,
      example_index: tf.Tensor | None = None,
  ) -> tuple[tf.Tensor, tf.Tensor]:
    """ELBO and importance-weighted log p(x) from the same K log-weights.

        log w_k = log p(x|zK_k) + log p(zK_k) - log q0(z0_k|x)
                  + sum_j log|det J_j|(z0_k)
        elbo = mean_k log w_k,   iw = logmeanexp_k log w_k   (Burda et al. 2016)

    Chunks of min(chunk_size, max(1, max_chunk_rows // B)) samples run in a
    `tf.while_loop` with a running logsumexp: memory does not grow with K.
    The noise of sample k of example b depends only on (seed,
    example_index[b], k) (`indexed_noise.normal`), so each example's estimate
    is the same, up to float rounding, whatever its batch-mates, B or the
    chunk size.

    Args:
      x: [B, *data_shape] float32.
      num_samples: K.
      seed: int tensor [2].
      chunk_size: samples per chunk.
      max_chunk_rows: cap on B * samples per chunk (bounds memory).
      example_index: [B] integer indices of the examples (e.g. their
        positions in the evaluated split); default 0..B-1.

    Returns:
      (elbo [B], iw_log_likelihood [B]) float32, nats.
    """
    x = tf.convert_to_tensor(x, tf.float32)
    loc, scale, context = self._encode_params(x)
    batch_size = tf.shape(x)[0]
    if example_index is None:
      example_index = tf.range(batch_size)
    chunk = tf.maximum(
        1, tf.minimum(tf.cast(chunk_size, tf.int32),
                      max_chunk_rows // tf.maximum(batch_size, 1)))

    def log_weights(i: tf.Tensor, n: tf.Tensor) -> tf.Tensor:
      samples = self._latent_samples(loc, scale, context, n, seed,
                                     example_index=example_index,
                                     first_sample=i * chunk)
      log_px = self._log_px(x, samples["zk"], n)
      log_pz = tf.reshape(self.prior.log_prob(samples["zk"]), [n, -1])
      log_w = objectives.log_importance_weights(
          log_px, log_pz, samples["log_q0"], samples["log_det"])
      # Keeps a static B: the while loop's running state has that shape.
      return tf.reshape(log_w, [n, batch_size])

    return objectives.chunked_log_weight_stats(log_weights, num_samples, chunk,
                                               batch_size)

  def decode(self, z: tf.Tensor) -> tf.Tensor:
    """Z [N, d] -> x_mean [N, *data_shape], the likelihood's mean.

    In data units.
    """
    return self.likelihood.mean(self.generator(tf.cast(z, tf.float32)))

  def sample(self, n: int | tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """N samples zK ~ p(z), decoded: [n, *data_shape] likelihood means."""
    return self.decode(self.prior.sample(n, seed))

  # ------------------------------------------------- evaluation and serving
  def test_estimates(self, batch: Mapping[str, tf.Tensor], seed: tf.Tensor,
                     counts: SampleCounts) -> dict[str, tf.Tensor]:
    """ELBO and importance-weighted log p(x) per example, [B] each.

    {"elbo", "log_likelihood"} of `log_likelihood` with K =
    counts.importance_samples, min(counts.chunk_size, K) samples per chunk
    and example_index = batch["index"].
    """
    k = int(counts.importance_samples)
    elbo, log_likelihood = self.log_likelihood(
        batch["x"], k, seed, chunk_size=int(min(counts.chunk_size, k)),
        example_index=batch["index"])
    return {"elbo": elbo, "log_likelihood": log_likelihood}

  def test_metrics(self, terms: Mapping[str, float],
                   estimates: Mapping[str, float],
                   labels: np.ndarray | None,
                   counts: SampleCounts) -> dict[str, Any]:
    """test_elbo, test_log_likelihood (K samples), test_reconstruction, K.

    Returns:
      {"test_elbo": mean_n mean_k log w_nk, "test_log_likelihood":
      mean_n log (1/K) sum_k w_nk (Burda et al. 2016), "test_reconstruction":
      mean_n E_q log p(x_n|zK), "num_importance_samples": K}, nats.
    """
    del labels
    return {
        "test_elbo": estimates["elbo"],
        "test_log_likelihood": estimates["log_likelihood"],
        "test_reconstruction": terms["reconstruction"],
        "num_importance_samples": int(counts.importance_samples),
    }

  def serve(self, signature: str, inputs: tf.Tensor, seed: tf.Tensor,
            counts: SampleCounts) -> dict[str, tf.Tensor]:
    """Outputs of the serving signatures "encode", "decode", "log_likelihood".

    decode: z [B, d] -> x_mean [B, *data_shape] (the likelihood's mean; no
    sampling). log_likelihood: x [B, *data_shape] -> elbo [B],
    log_likelihood [B] (K = counts.importance_samples, chunks of
    max(1, min(counts.chunk_size, K)) samples). encode: see
    `LatentVariableModel.serve`.
    """
    if signature == "decode":
      return {"x_mean": self.decode(inputs)}
    if signature == "log_likelihood":
      k = int(counts.importance_samples)
      elbo, log_likelihood = self.log_likelihood(
          inputs, k, seed, chunk_size=int(max(1, min(counts.chunk_size, k))))
      return {"elbo": elbo, "log_likelihood": log_likelihood}
    return super().serve(signature, inputs, seed, counts)

  def call(self, inputs: Any, training: bool = False) -> tf.Tensor:
    """Reconstruction: the decoded mean of one posterior sample.

    Shape [B, *data_shape].
    """
    x = self._as_batch(inputs)["x"]
    return self.decode(self.encode(x, self._next_seed())["z"])
