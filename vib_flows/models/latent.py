"""`LatentVariableModel`: what the VAE and the VIB share.

The encoder's diagonal Gaussian q0(z0|x), posterior samples pushed through
the flow (z0 [S, B, d] with the context [B, C], never tiled), the KL term
(closed form or Monte Carlo), the surrogate of the chosen gradient estimator
with its score-function baseline, Keras `fit`/`evaluate` support and Keras
saving; and what the application asks of each kind of model, so that it
never names the kind: whether it needs labels, whether it models x, its test
metrics and its serving signatures. The package docstring
(`vib_flows.models`) gives the maths and the randomness contract.
"""

from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
from typing import Any, ClassVar, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from vib_flows import distributions
from vib_flows import flows
from vib_flows import indexed_noise
from vib_flows import networks
from vib_flows import objectives
from vib_flows.training_step import scaled_loss
from vib_flows.training_step import step_seed


@dataclasses.dataclass(frozen=True)
class SampleCounts:
  """Posterior sample counts of the test-time estimates and of serving.

  Attributes:
    importance_samples: K of the importance-weighted log p(x)
      (`VAE.log_likelihood`).
    chunk_size: importance samples per chunk (bounds memory; at most K).
    predictive_samples: S of the predictive p(y|x) ~= mean_s p(y|zK_s)
      (`VIB.predict_proba`).
  """

  importance_samples: int = 1000
  chunk_size: int = 500
  predictive_samples: int = 12


class Signature(NamedTuple):
  """A serving signature of a model: its input and the checks it asks for.

  Attributes:
    input: "x" (data [B, *data_shape]) or "z" (latents [B, d]).
    limit_rows: its cost grows with the rows: requests hold at most a set
      number of rows.
    in_support: x must lie in the support of the model's `input_likelihood`
      (where it is narrower than x's range, e.g. {0, 1} for a Bernoulli
      likelihood).
  """

  input: str = "x"
  limit_rows: bool = False
  in_support: bool = False


class LatentVariableModel(keras.Model):
  """Shared machinery of `VAE` and `VIB` (posterior samples, KL, fit support).

  The class attributes `needs_labels`, `models_inputs` and
  `serving_signatures`, and the methods `test_estimates`, `test_metrics` and
  `serve`, say what a kind of model asks of the data, the evaluation and the
  export; a subclass sets them for its kind. The class attributes can be
  read before a model exists (e.g. by the data loader).

  Args:
    data_shape: shape of one example x, e.g. (64,) or (28, 28, 1).
    encoder: `networks.Encoder`.
    flow: `flows.FlowStack` (possibly empty) or None (no flow).
    generator: `networks.MLP` (decoder or classifier).
    prior: `distributions.Prior`.
    input_likelihood: the likelihood of x (its `normalize` / `validate` give the
      encoder input and the data checks).
    beta: final KL weight (of `fit`, the package's trainer and its
      evaluation).
    warmup_steps: linear KL warm-up steps (of `fit` and the trainer).
    estimator: "pathwise" or "score_function".
    num_samples: posterior samples per example in `per_example_loss`.
    force_monte_carlo_kl: Monte Carlo KL even where the closed form exists.
    baseline_decay: decay of the score-function moving-average baseline.
    seed: seed of the training noise (`step_seed(seed, t)` at step t, in
      `fit` and the trainer) and of the SeedGenerator of evaluate/predict.
  """

  built: bool  # Keras's flag, declared: the type checker sees no Keras types.
  term_names: tuple[str, ...] = ()
  # per_example_loss reads labels batch["y"] [B]: the data must have them.
  needs_labels: ClassVar[bool] = False
  # A likelihood p(x|zK) of the inputs: `decode(z)`, `sample(n, seed)` and
  # `log_likelihood(x, K, seed)` exist, and x must lie in its support.
  models_inputs: ClassVar[bool] = False
  # Serving signature name -> `Signature`; the first is serving_default.
  serving_signatures: ClassVar[Mapping[str, Signature]] = {
      "encode": Signature("x")}
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

  # ------------------------------------------------- evaluation and serving
  def test_estimates(self, batch: Mapping[str, tf.Tensor], seed: tf.Tensor,
                     counts: SampleCounts) -> dict[str, tf.Tensor]:
    """Per-example test-time estimates beyond the loss terms; none here.

    Args:
      batch: {"x": [B, *data_shape] float32, "index": [B] int32 positions of
        the examples in the split, "y": [B] int32 labels when the split has
        them}.
      seed: int tensor [2]; with batch["index"], each example's samples
        depend only on (seed, its index).
      counts: the sample counts.

    Returns:
      name -> [B] float32; the evaluation averages each over the split and
      passes the means to `test_metrics`.
    """
    del batch, seed, counts
    return {}

  def test_metrics(self, terms: Mapping[str, float],
                   estimates: Mapping[str, float],
                   labels: np.ndarray | None,
                   counts: SampleCounts) -> dict[str, Any]:
    """The model's own test metrics (beyond test_loss and test_kl); none here.

    Args:
      terms: split means of the `per_example_loss` terms (at `beta`).
      estimates: split means of the `test_estimates`.
      labels: the split's labels [N], or None.
      counts: the sample counts of the estimates.

    Returns:
      metric name -> value (numbers for metrics.json).
    """
    del terms, estimates, labels, counts
    return {}

  def serve(self, signature: str, inputs: tf.Tensor, seed: tf.Tensor,
            counts: SampleCounts) -> dict[str, tf.Tensor]:
    """Outputs of the serving signature `signature` (`serving_signatures`).

    "encode": x [B, *data_shape] -> z_mean [B, d], z_stddev [B, d], z [B, d]
    (one flow-transformed posterior sample zK).

    Args:
      signature: a key of `serving_signatures`.
      inputs: its input, x [B, *data_shape] or z [B, d] float32 (checked).
      seed: int tensor [2] of the request.
      counts: sample counts of the sampling signatures.

    Returns:
      output name -> tensor [B, ...].
    """
    del counts
    if signature != "encode":
      raise ValueError(
          f"{type(self).__name__} has no serving signature {signature!r}; "
          f"valid: {', '.join(self.serving_signatures)}.")
    out = self.encode(inputs, seed)
    return {k: out[k] for k in ("z_mean", "z_stddev", "z")}

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
