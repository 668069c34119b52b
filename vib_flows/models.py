"""The VAE and VIB Keras models.

encoder -> q0(z0|x) -> FlowStack -> zK -> generator:

    z0 = mu(x) + sigma(x) * eps,     eps ~ N(0, I)   (Kingma & Welling 2014)
    zK, sum_k log|det J_k| = flow(z0, context(x))
                  (Rezende & Mohamed 2015; van den Berg et al. 2018)
    log qK(zK|x) = log q0(z0|x) - sum_k log|det J_k|
    VAE: loss = E_q[-log p(x|zK)] + beta * E_q[log qK(zK|x) - log p(zK)]
    VIB: loss = E_q[-log p(y|zK)] + beta * E_q[log qK(zK|x) - log p(zK)]
                                                      (Alemi et al. 2017)

Randomness: every method takes an explicit `seed`, an integer tensor of shape
[2] for stateless ops (`tf.random.stateless_normal`), so that runs repeat and a
SavedModel signature can sample with a seed derived from its inputs.
`train_step` (`fit`) seeds step t with `step_seed(seed, t)` as the trainer does;
only `call` and `test_step` (`predict`/`evaluate`) draw seeds from the model's
`keras.random.SeedGenerator` (not saved in .keras files: a reloaded model's
starts again from `seed`). For the same seed,
`encode(x, seed)["z"]` is the sample that `per_example_loss` (num_samples=1)
uses.

Single-replica view: `per_example_loss` returns per-example tensors; the trainer
averages them over the global batch. The score-function baseline is a
non-trainable float32 weight with aggregation "mean" that `per_example_loss`
updates in place when `training=True` (under tf.distribute, each replica assigns
its moving average and the strategy averages them; the result is the moving
average of the global-batch mean cost).
"""


from collections.abc import Mapping
from collections.abc import Sequence
import importlib
from typing import Any
import warnings

import keras
import numpy as np
import tensorflow as tf

from vib_flows import distributions
from vib_flows import flows
from vib_flows import indexed_noise
from vib_flows import networks
from vib_flows import objectives

MODEL_KINDS = ("vae", "vib")
PRIOR_FLOW_LAYERS = 2  # Layers of the "flow" prior (an invertible flow).
MAX_CHUNK_ROWS = 8192  # log_likelihood: examples x samples per chunk, at most.


def step_seed(seed: int | tf.Tensor, step: tf.Tensor) -> tf.Tensor:
  """The noise seed of training step `step` on the current replica.

      seed_t,r = fold_in(fold_in([seed, 0], t), r)

  (r = replica id in the sync group; 0 without a strategy). Used by the
  trainer and by `fit`, so both draw the same noise at the same step.

  Args:
    seed: the run's seed (config.seed).
    step: scalar integer tensor, the optimizer step before the update.

  Returns:
    int tensor [2], a stateless seed.
  """
  base = tf.stack([tf.cast(seed, tf.int32), tf.constant(0, tf.int32)])
  replica = tf.distribute.get_replica_context().replica_id_in_sync_group
  return tf.random.experimental.stateless_fold_in(
      tf.random.experimental.stateless_fold_in(base, step), replica)


def scaled_loss(
    model: "LatentVariableModel", batch: dict[str, tf.Tensor],
    beta: float | tf.Tensor, seed: tf.Tensor,
    global_batch_size: int | tf.Tensor,
    optimizer: keras.optimizers.Optimizer | None = None,
    training: bool = True,
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
  """The loss one replica differentiates, and the summed loss terms.

      loss = sum_b surrogate_b / global_batch_size
             + sum(model.losses) / num_replicas
      scaled = optimizer.scale_loss(loss)   (the loss scale under mixed
                                             precision; unchanged otherwise)

  (`tf.nn.compute_average_loss`, `tf.nn.scale_regularization_loss`). Summing
  the replicas' gradients of `scaled` (what the Keras optimizer does) gives
  the gradient of the global-batch mean loss.

  Args:
    model: a `VAE` / `VIB`.
    batch: this replica's batch, {"x": [B, ...], "y": [B] (VIB)}.
    beta: KL weight of this step.
    seed: int tensor [2] (`step_seed`).
    global_batch_size: examples in the batch over all replicas.
    optimizer: the optimizer applying the gradients (None: no loss scaling).
    training: update the score-function baseline and use training mode.

  Returns:
    (scaled loss, scalar float32 sums over this replica's batch of each
    per-example term of `per_example_loss`, plus "count" = B).
  """
  surrogate, terms = model.per_example_loss(batch, beta, seed,
                                            training=training)
  loss = tf.nn.compute_average_loss(surrogate,
                                    global_batch_size=global_batch_size)
  if model.losses:
    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
  if optimizer is not None:
    loss = optimizer.scale_loss(loss)
  sums = {k: tf.reduce_sum(tf.cast(v, tf.float32)) for k, v in terms.items()}
  sums["count"] = tf.cast(tf.shape(surrogate)[0], tf.float32)
  return loss, sums


class LatentVariableModel(keras.Model):
  """Shared machinery of `VAE` and `VIB` (posterior samples, KL, fit support).

  Args:
    data_shape: shape of one example x, e.g. (64,) or (28, 28, 1).
    encoder: `networks.Encoder`.
    flow: `flows.FlowStack` (possibly empty) or None (no flow).
    generator: `networks.MLP` (decoder or classifier).
    prior: `distributions.Prior`.
    input_likelihood: the likelihood of x (its `normalize` / `validate` give the
      encoder input and the data checks).
    beta: final KL weight (used by `fit`).
    warmup_steps: linear KL warm-up steps (used by `fit`).
    estimator: "pathwise" or "score_function".
    num_samples: posterior samples per example in `per_example_loss`.
    force_monte_carlo_kl: Monte Carlo KL even where the closed form exists.
    baseline_decay: decay of the score-function moving-average baseline.
    seed: seed of the SeedGenerator used by fit/evaluate/predict.
  """

  built: bool  # Keras's flag, declared: the type checker sees no Keras types.
  term_names: tuple[str, ...] = ()
  # Constructor arguments that are layers, saved as nested Keras configs.
  layer_arguments: tuple[str, ...] = ("encoder", "flow", "prior")

  def __init__(self, data_shape: Sequence[int], encoder: networks.Encoder,
               flow: flows.FlowStack | None, generator: keras.layers.Layer,
               prior: distributions.Prior,
               input_likelihood: distributions.Likelihood, beta: float = 1.0,
               warmup_steps: int = 0, estimator: str = "pathwise",
               num_samples: int = 1, force_monte_carlo_kl: bool = False,
               baseline_decay: float = 0.99, seed: int = 0, **kwargs: Any):
    super().__init__(**kwargs)
    if estimator not in objectives.ESTIMATORS:
      raise ValueError(
          f"Unknown loss.estimator {estimator!r}; valid estimators: "
          f"{', '.join(objectives.ESTIMATORS)}."
      )
    self.data_shape = tuple(int(s) for s in data_shape)
    self.latent_dim = encoder.latent_dim
    self.encoder = encoder
    self.flow = flow if flow is not None else flows.FlowStack([], name="flow")
    self.generator = generator
    self.prior = prior
    self.input_likelihood = input_likelihood
    self.beta = float(beta)
    self.warmup_steps = int(warmup_steps)
    self.estimator = estimator
    self.num_samples = int(num_samples)
    self.force_monte_carlo_kl = bool(force_monte_carlo_kl)
    self.baseline_decay = float(baseline_decay)
    self.seed = int(seed)
    self.seed_generator = keras.random.SeedGenerator(self.seed, name="seed")
    # Keras hides the SeedGenerator from TF's object graph, so tf.saved_model
    # .save of anything holding the model fails on the traced `call`; a plain
    # tf.Module makes the state reachable without listing it twice in
    # model.variables.
    self.seed_state = tf.Module(name="seed_state")
    self.seed_state.state = self.seed_generator.state
    self.baseline = self.add_weight(
        name="score_function_baseline", shape=(), initializer="zeros",
        dtype="float32", trainable=False, aggregation="mean",
    )
    self.trackers = [keras.metrics.Mean(name=n) for n in self.term_names]

  # ---------------------------------------------------------------- building
  def build(self, input_shape: Sequence[int | None] | None = None) -> None:
    if self.built:
      return
    d = self.latent_dim
    if not self.encoder.built:
      self.encoder.build((None,) + self.data_shape)
    context_shape = (None, self.encoder.context_dim) if self.amortized else None
    self.flow.build((None, d), context_shape)
    if not self.generator.built:
      self.generator.build((None, d))
    self.built = True

  @property
  def amortized(self) -> bool:
    """True when the flow takes the encoder's context (per-example flows)."""
    return self.flow.amortized

  @property
  def closed_form_kl(self) -> bool:
    """True when KL(q0 || p) is used in closed form (no flow, N(0, I) prior)."""
    return (len(self.flow) == 0 and self.prior.is_standard_normal
            and not self.force_monte_carlo_kl)

  # ------------------------------------------------------------- posterior
  def _encode_params(self, x: tf.Tensor, training: bool = False
                     ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | None]:
    """X [B, *data_shape] -> (loc [B, d], scale [B, d] f32, context|None)."""
    x_in = self.input_likelihood.normalize(x)
    loc, scale, context = self.encoder(x_in, training=training)
    loc, scale = tf.cast(loc, tf.float32), tf.cast(scale, tf.float32)
    if not self.amortized:
      context = None
    return loc, scale, context

  def _latent_samples(self, loc: tf.Tensor, scale: tf.Tensor,
                      context: tf.Tensor | None, num_samples: int | tf.Tensor,
                      seed: tf.Tensor, stop_gradient: bool = False,
                      example_index: tf.Tensor | None = None,
                      first_sample: int | tf.Tensor = 0
                      ) -> dict[str, tf.Tensor]:
    """S posterior samples per example pushed through the flow.

    With `example_index` [B], the noise of sample s of example b depends only
    on (seed, example_index[b], first_sample + s) (`indexed_noise.normal`), so
    an example's samples do not depend on its batch-mates or on how its
    samples are chunked; without it, one `tf.random.stateless_normal` draw of
    [S, B, d] (cheaper; used in training). The flow takes z0 [S, B, d] with
    the context [B, C] (never tiled S times).

    Returns dict: z0 [S, B, d], zk [S*B, d] float32 (flat index s * B + b),
    log_q0 [S, B] = log q0(z0|x), log_det [S, B] = sum_k log|det J_k|.
    """
    if example_index is None:
      z0 = distributions.sample_diagonal_gaussian(loc, scale, num_samples,
                                                  seed)
    else:
      sample_index = first_sample + tf.range(num_samples)
      eps = indexed_noise.normal(seed, example_index, sample_index,
                                 self.latent_dim)
      z0 = loc + scale * eps
    if stop_gradient:
      z0 = tf.stop_gradient(z0)
    log_q0 = distributions.diagonal_gaussian_log_prob(z0, loc, scale)
    if len(self.flow):
      # z0 [S, B, d] with context [B, C]: the flow computes each example's
      # amortized parameters once and broadcasts them over the S samples.
      zk, log_det = self.flow(z0, context=context)
      zk = tf.reshape(tf.cast(zk, tf.float32), [-1, self.latent_dim])
      log_det = tf.cast(log_det, tf.float32)
    else:
      zk = tf.reshape(z0, [-1, self.latent_dim])
      log_det = tf.zeros_like(log_q0)
    return {"z0": z0, "zk": zk, "log_q0": log_q0, "log_det": log_det}

  def _kl_terms(self, loc: tf.Tensor, scale: tf.Tensor,
                samples: Mapping[str, tf.Tensor]
                ) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Returns (kl [B], kl_per_sample [S, B] or None when in closed form)."""
    if self.closed_form_kl:
      return distributions.kl_diagonal_gaussians(loc, scale), None
    log_pz = tf.reshape(self.prior.log_prob(samples["zk"]),
                        tf.shape(samples["log_q0"]))
    log_qk = objectives.flow_log_prob(samples["log_q0"], samples["log_det"])
    return (objectives.monte_carlo_kl(log_qk, log_pz),
            objectives.log_density_ratio(log_qk, log_pz))

  def _loss_samples(self, x: tf.Tensor, seed: tf.Tensor, training: bool,
                    example_index: tf.Tensor | None = None
                    ) -> tuple[dict[str, tf.Tensor], tf.Tensor,
                               tf.Tensor | None]:
    """The posterior part of both losses: loss.num_samples samples and the KL.

    z0 is detached for the score-function estimator (its gradient then comes
    from the score term of `_surrogate`). `example_index`: see
    `_latent_samples`.

    Returns:
      (samples of `_latent_samples`, kl [B], kl_s [S, B] or None when the KL
      is in closed form).
    """
    loc, scale, context = self._encode_params(x, training)
    samples = self._latent_samples(
        loc, scale, context, self.num_samples, seed,
        stop_gradient=self.estimator == "score_function",
        example_index=example_index)
    kl, kl_s = self._kl_terms(loc, scale, samples)
    return samples, kl, kl_s

  def _surrogate(self, nll_s: tf.Tensor, kl: tf.Tensor,
                 kl_s: tf.Tensor | None, beta: tf.Tensor, log_q0: tf.Tensor,
                 training: bool) -> tf.Tensor:
    """Surrogate [B] of the loss mean_s nll_s + beta * KL for the estimator."""
    if self.estimator == "pathwise":
      return objectives.pathwise_surrogate(nll_s) + beta * kl
    # The sampled part of the cost (the closed-form KL is differentiated
    # exactly); the baseline tracks its mean.
    cost = nll_s + (beta * kl_s if kl_s is not None else 0.0)
    baseline = tf.convert_to_tensor(self.baseline)
    surrogate = objectives.score_function_surrogate(cost, log_q0, baseline)
    if kl_s is None:
      surrogate += beta * kl  # Closed form: its exact gradient.
    if training:
      self.baseline.assign(objectives.moving_average(
          baseline, tf.stop_gradient(tf.reduce_mean(cost)),
          self.baseline_decay))
    return surrogate

  def encode(self, x: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
    """X [B, *data_shape] -> dict(z_mean [B, d], z_stddev [B, d], z [B, d]).

    z is one flow-transformed posterior sample zK (float32).
    """
    x = tf.convert_to_tensor(x, tf.float32)
    loc, scale, context = self._encode_params(x)
    samples = self._latent_samples(loc, scale, context, 1, seed)
    return {"z_mean": loc, "z_stddev": scale, "z": samples["zk"]}

  # -------------------------------------------------------------- fit support
  def _next_seed(self) -> tf.Tensor:
    return self.seed_generator.next()

  @staticmethod
  def _as_batch(data: Any) -> dict[str, Any]:
    """Fit data (dict, (x,), (x, y) or x) -> {"x": ..., "y": ...}."""
    if isinstance(data, dict):
      return data
    if isinstance(data, (tuple, list)):
      if data and isinstance(data[0], dict):
        return data[0]
      batch = {"x": data[0]}
      if len(data) > 1 and data[1] is not None:
        batch["y"] = data[1]
      return batch
    return {"x": data}

  @property
  def metrics(self) -> list[keras.metrics.Metric]:
    """The per-term means that `fit` and `evaluate` report."""
    return list(self.trackers)

  def _update_trackers(self, terms: Mapping[str, tf.Tensor]
                       ) -> dict[str, tf.Tensor]:
    for tracker in self.trackers:
      tracker.update_state(terms[tracker.name])
    return {t.name: t.result() for t in self.trackers}

  def train_step(self, data: Any) -> dict[str, tf.Tensor]:
    """One `fit` step, scaled and seeded as the trainer's (`scaled_loss`).

    The noise of step t on replica r comes from `step_seed(seed, t)`, so a
    model restored with its optimizer (e.g. from a .keras file) continues
    with the noise an uninterrupted run would have drawn.
    """
    batch = self._as_batch(data)
    step = self.optimizer.iterations
    beta = objectives.beta_schedule(step, self.beta, self.warmup_steps)
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    global_batch = tf.shape(batch["x"])[0] * replicas
    with tf.GradientTape() as tape:
      loss, sums = scaled_loss(self, batch, beta, step_seed(self.seed, step),
                               global_batch, optimizer=self.optimizer)
    grads = tape.gradient(loss, self.trainable_variables)
    self.optimizer.apply(grads, self.trainable_variables)
    count = sums["count"]
    for tracker in self.trackers:
      tracker.update_state(sums[tracker.name] / count, sample_weight=count)
    return {t.name: t.result() for t in self.trackers}

  def test_step(self, data: Any) -> dict[str, tf.Tensor]:
    batch = self._as_batch(data)
    _, terms = self.per_example_loss(batch, self.beta, self._next_seed())
    return self._update_trackers(terms)

  def validate_batch(self, batch: Mapping[str, Any]) -> None:
    """Raises ValueError if batch["x"] (or labels) lie outside the support."""
    self.input_likelihood.validate(np.asarray(batch["x"]))

  # ------------------------------------------------------------ Keras saving
  def get_config(self) -> dict[str, Any]:
    """Every constructor argument; layers as nested Keras configs.

    With `from_config` this makes `model.save("m.keras")` and
    `keras.saving.load_model` rebuild the same model; the weights, the
    score-function baseline and the SeedGenerator state come from the saved
    variables.
    """
    config = super().get_config()
    config.update(
        data_shape=list(self.data_shape), beta=self.beta,
        warmup_steps=self.warmup_steps, estimator=self.estimator,
        num_samples=self.num_samples,
        force_monte_carlo_kl=self.force_monte_carlo_kl,
        baseline_decay=self.baseline_decay, seed=self.seed)
    for name in self.layer_arguments:
      config[name] = keras.saving.serialize_keras_object(getattr(self, name))
    return config

  @classmethod
  def from_config(cls, config: dict[str, Any],
                  custom_objects: dict[str, Any] | None = None
                  ) -> "LatentVariableModel":
    """The model `get_config` describes (built, with fresh weights)."""
    config = dict(config)
    for name in cls.layer_arguments:
      config[name] = keras.saving.deserialize_keras_object(
          config[name], custom_objects=custom_objects)
    return cls(**config)


@keras.saving.register_keras_serializable(package="vib_flows")
class VAE(LatentVariableModel):
  """Variational autoencoder with a flow posterior (see the module docstring).

  Args:
    likelihood: `distributions.Likelihood` of x given the decoder output.
    decoder: `networks.MLP` with `likelihood.num_params` outputs.
    (other args: `LatentVariableModel`.)
  """

  term_names = ("loss", "elbo", "reconstruction", "kl")
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

  def call(self, inputs: Any, training: bool = False) -> tf.Tensor:
    """Reconstruction: the decoded mean of one posterior sample.

    Shape [B, *data_shape].
    """
    x = self._as_batch(inputs)["x"]
    return self.decode(self.encode(x, self._next_seed())["z"])


@keras.saving.register_keras_serializable(package="vib_flows")
class VIB(LatentVariableModel):
  """Deep variational information bottleneck (Alemi et al. 2017) with flows.

  Args:
    classifier: `networks.MLP` with num_classes outputs (logits of p(y|zK)).
    labels: `distributions.CategoricalLabels`.
    input_likelihood: likelihood of x, used only to normalize and check x.
    predict_samples: S used by `call`/`predict` (Alemi et al. used 12).
    (other args: `LatentVariableModel`.)
  """

  term_names = ("loss", "cross_entropy", "kl", "accuracy")
  layer_arguments = LatentVariableModel.layer_arguments + (
      "classifier", "labels", "input_likelihood")

  def __init__(self, data_shape: Sequence[int], encoder: networks.Encoder,
               flow: flows.FlowStack | None, classifier: keras.layers.Layer,
               prior: distributions.Prior,
               labels: distributions.CategoricalLabels,
               input_likelihood: distributions.Likelihood,
               predict_samples: int = 12, **kwargs: Any):
    kwargs.setdefault("name", "vib")
    super().__init__(data_shape, encoder, flow, classifier, prior,
                     input_likelihood, **kwargs)
    self.labels = labels
    self.num_classes = labels.num_classes
    self.predict_samples = int(predict_samples)
    self.build((None,) + self.data_shape)

  @property
  def classifier(self) -> keras.layers.Layer:
    """The generator: zK [N, d] -> class logits [N, num_classes]."""
    return self.generator

  def _logits(self, zk: tf.Tensor, num_samples: int | tf.Tensor
              ) -> tf.Tensor:
    """[S*B, d] -> [S, B, C] float32 logits."""
    logits = tf.cast(self.generator(zk), tf.float32)
    return tf.reshape(logits, [num_samples, -1, self.num_classes])

  def per_example_loss(
      self, batch: dict[str, tf.Tensor], beta: float | tf.Tensor,
      seed: tf.Tensor, training: bool = False,
      example_index: tf.Tensor | None = None,
  ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """VIB loss per example: cross-entropy + beta * KL.

    Args:
      batch: {"x": [B, *data_shape] float32, "y": [B] integer labels}.
      beta: scalar KL weight (the bottleneck beta).
      seed: int tensor [2].
      training: update the score-function baseline.
      example_index: optional [B] integer indices; each example's noise then
        depends only on (seed, its index) (see `_latent_samples`).

    Returns:
      surrogate [B] and terms {"loss", "cross_entropy", "kl", "accuracy"}, each
      [B] float32: cross_entropy = mean_s -log p(y|zK_s); accuracy = 1 when
      argmax of mean_s p(.|zK_s) equals y.
    """
    if "y" not in batch:
      raise ValueError("The VIB needs labels: batch['y'] is missing.")
    x = tf.cast(batch["x"], tf.float32)
    y = tf.cast(batch["y"], tf.int32)
    beta = tf.cast(beta, tf.float32)
    samples, kl, kl_s = self._loss_samples(x, seed, training, example_index)
    logits = self._logits(samples["zk"], self.num_samples)
    nll_s = -self.labels.log_prob(logits, y[tf.newaxis])  # [S, B]
    cross_entropy = tf.reduce_mean(nll_s, axis=0)
    probs = tf.reduce_mean(tf.nn.softmax(logits, axis=-1), axis=0)
    correct = tf.equal(tf.argmax(probs, axis=-1, output_type=tf.int32), y)
    terms = {"loss": objectives.vib_loss(cross_entropy, kl, beta),
             "cross_entropy": cross_entropy, "kl": kl,
             "accuracy": tf.cast(correct, tf.float32)}
    surrogate = self._surrogate(nll_s, kl, kl_s, beta, samples["log_q0"],
                                training)
    return surrogate, terms

  def predict_proba(self, x: tf.Tensor, num_samples: int | tf.Tensor,
                    seed: tf.Tensor,
                    example_index: tf.Tensor | None = None) -> tf.Tensor:
    """p(y|x) ~= mean_s p(y|zK_s): [B, *data_shape] -> [B, num_classes].

    `example_index` (optional [B]): see `_latent_samples`.
    """
    x = tf.convert_to_tensor(x, tf.float32)
    loc, scale, context = self._encode_params(x)
    samples = self._latent_samples(loc, scale, context, num_samples, seed,
                                   example_index=example_index)
    logits = self._logits(samples["zk"], num_samples)
    return tf.reduce_mean(tf.nn.softmax(logits, axis=-1), axis=0)

  def call(self, inputs: Any, training: bool = False) -> tf.Tensor:
    """Class probabilities averaged over `predict_samples` samples, [B, C]."""
    x = self._as_batch(inputs)["x"]
    return self.predict_proba(x, self.predict_samples, self._next_seed())

  def validate_batch(self, batch: Mapping[str, Any]) -> None:
    super().validate_batch(batch)
    if "y" in batch:
      distributions.validate_labels(np.asarray(batch["y"]), self.num_classes)

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(predict_samples=self.predict_samples)
    return config


# ------------------------------------------------- deprecated builder aliases
_MOVED_TO_MODEL_BUILDER = ("build_model", "flow_kwargs")


def __getattr__(name: str) -> Any:
  """`models.build_model` and `models.flow_kwargs`, deprecated.

  They read the ml_collections config, so they moved to the application's
  `vib_flows.model_builder`; these aliases load it on first use only, so
  that importing the library never does.
  """
  if name not in _MOVED_TO_MODEL_BUILDER:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  warnings.warn(
      f"vib_flows.models.{name} is deprecated; use "
      f"vib_flows.model_builder.{name}.", DeprecationWarning, stacklevel=2)
  builder = importlib.import_module("vib_flows.model_builder")
  return getattr(builder, name)
