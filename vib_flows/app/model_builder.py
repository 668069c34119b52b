"""The model a config describes: the one place the library meets the config.

The library (`flows`, `distributions`, `networks`, `objectives`, `models`)
takes plain arguments. This application module reads the ml_collections
config (configs/default.py) and passes its fields on:

    build_model(config, data_info) -> a built `models.VAE` or `models.VIB`
    flow_kwargs(config, flow_name)  -> the constructor options of a flow
    model_class(kind)               -> the model class of a model.kind

It holds the one mapping of `model.kind` to a model class and the function
that builds it (`register_model_kind`): the rest of the application asks the
class (`model_class(config.model.kind).needs_labels`, ...) or the model, never
compares kind names.

It re-checks none of the choices `config_checks.validate` checks (the
trainer, the evaluation and the export validate every config once, before any
work) but the model kind and network it dispatches on (`check_network`);
an unchecked config with an unknown name is still refused, by the
library's own factories (`flows.get`, `distributions.make_prior`,
`make_likelihood`, `networks.make_decoder`, the models' estimator), with
the valid names listed.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import ml_collections

from vib_flows import distributions
from vib_flows import fields
from vib_flows import flows
from vib_flows import gated_conv
from vib_flows import models
from vib_flows import networks

# The likelihood whose support and normalization fit each data.preprocess.
INPUT_LIKELIHOOD_OF_PREPROCESS = {
    "levels": "categorical", "scale": "gaussian", "static": "bernoulli",
    "threshold": "bernoulli",
    "dynamic": "bernoulli",
}
# model.network: "mlp" (`networks.Encoder`, `networks.MLP`) or "gated_conv"
# (`gated_conv.GatedConvEncoder`, `gated_conv.GatedConvDecoder`).
NETWORKS = ("mlp", "gated_conv")


def flow_kwargs(config: ml_collections.ConfigDict,
                flow_name: str) -> dict[str, Any]:
  """Constructor options of `flow_name` from config.flow.

  The shared fields (hidden_units, num_ortho_vectors, num_householder,
  forget_bias) go to the flows whose constructor takes them; the entries of
  config.flow.options go to the flow config.flow.name as they are (they win
  over the shared fields; `flows.get` refuses an option the flow does not
  take, listing the valid ones).
  """
  latent_dim = int(config.model.latent_dim)
  shared = {
      "hidden_units": int(config.flow.hidden_units),
      "num_ortho_vectors": int(config.flow.num_ortho_vectors) or latent_dim,
      "num_householder": int(config.flow.num_householder),
      "forget_bias": float(config.flow.forget_bias),
  }
  options = {}
  if flow_name == config.flow.name:
    options = dict(config.flow.get("options") or {})
  return dict(flows.registry.filter_options(flow_name, shared), **options)


def check_true_decoder(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError unless `model.decoder='true'` fits `config`.

  The true decoder is the network that generated a synthetic data set: it
  needs that data set, its 2-D latent and a Bernoulli VAE.
  """
  # Imported here: building a model needs the data sources only for this.
  from vib_flows.data import synthetic  # pylint: disable=g-import-not-at-top
  if not synthetic.is_synthetic_name(config.data.name):
    raise ValueError(
        "model.decoder='true' needs data from a known model: data.name must "
        f"be one of {', '.join(synthetic.NAMES)}, got {config.data.name!r}.")
  synthetic.variant_of(config.data.name)
  if int(config.model.latent_dim) != 2:
    raise ValueError(
        "model.decoder='true' needs model.latent_dim = 2 (the true model's "
        f"latent), got {config.model.latent_dim}.")
  if str(config.model.kind) != "vae" or str(
      config.model.likelihood) != "bernoulli":
    raise ValueError(
        "model.decoder='true' needs model.kind='vae' and "
        "model.likelihood='bernoulli', got "
        f"{config.model.kind!r} and {config.model.likelihood!r}.")


def check_network(config: ml_collections.ConfigDict) -> str:
  """config.model.network ("mlp" where absent); ValueError unless it fits.

  "gated_conv" is van den Berg et al. 2018's MNIST encoder and decoder: it
  supports the VAE with a Bernoulli likelihood and its own (learned) decoder;
  the 28x28x1 image shape is checked when the model is built.
  """
  network = str(config.model.get("network", "mlp"))
  fields.check_choice("model.network", network, NETWORKS)
  if network == "gated_conv":
    m = config.model
    if str(m.kind) != "vae":
      raise ValueError(
          "model.network='gated_conv' supports the VAE (model.kind='vae'), "
          f"got model.kind={m.kind!r}; use model.network='mlp'.")
    if str(m.likelihood) != "bernoulli":
      raise ValueError(
          "model.network='gated_conv' gives one Bernoulli logit per pixel: "
          "it needs model.likelihood='bernoulli', got "
          f"{m.likelihood!r}.")
    if str(m.get("decoder", "learned")) != "learned":
      raise ValueError(
          "model.network='gated_conv' learns its own decoder: it needs "
          f"model.decoder='learned', got {m.decoder!r}.")
  return network


def make_decoder(config: ml_collections.ConfigDict, output_units: int,
                 name: str = "decoder") -> Any:
  """The VAE decoder of `config.model.decoder` with `output_units` outputs.

  "learned": an MLP (model.decoder_hidden, model.activation); "true": the
  fixed true network of the synthetic data set `config.data.name`
  (`networks.TrueDecoder`).
  """
  kind = str(config.model.get("decoder", "learned"))
  variant = None
  if kind == "true":
    check_true_decoder(config)
    from vib_flows.data import synthetic  # pylint: disable=g-import-not-at-top
    variant = synthetic.variant_of(config.data.name)
  return networks.make_decoder(
      kind, output_units, config.model.decoder_hidden, config.model.activation,
      variant=variant, name=name)


class ModelParts(NamedTuple):
  """What every kind of model takes, built from the config by `build_model`.

  Attributes:
    input_shape: shape of one example x.
    num_levels: levels of the "levels" representation (data_info's, else
      model.num_levels).
    encoder: `networks.Encoder` or `gated_conv.GatedConvEncoder`.
    flow: `flows.FlowStack` (possibly empty).
    prior: `distributions.Prior`.
    options: the `LatentVariableModel` keyword arguments of config.loss and
      config.seed (beta, warmup_steps, estimator, num_samples,
      force_monte_carlo_kl, baseline_decay, seed).
  """

  input_shape: tuple[int, ...]
  num_levels: int
  encoder: Any
  flow: flows.FlowStack
  prior: distributions.Prior
  options: dict[str, Any]


# build(config, data_info, parts) -> the built model of one model.kind.
BuildFunction = Callable[[ml_collections.ConfigDict, Any, ModelParts],
                         models.LatentVariableModel]


class ModelKind(NamedTuple):
  """A registered model.kind: its class and the function that builds it."""

  model_class: type[models.LatentVariableModel]
  build: BuildFunction


_MODEL_KINDS: dict[str, ModelKind] = {}


def register_model_kind(kind: str,
                        model_class: type[models.LatentVariableModel],
                        build: BuildFunction) -> None:
  """Makes `model.kind=kind` build `build(config, data_info, parts)`.

  The hook for a new kind of model: a subclass of
  `models.LatentVariableModel` that sets what the application asks of it
  (`needs_labels`, `models_inputs`, `serving_signatures`, `test_estimates`,
  `test_metrics`, `serve`). The config checks, the data loading, the
  trainer, the evaluation and the export then take it without naming it.
  Registering a kind again replaces it.

  Args:
    kind: the value of config.model.kind.
    model_class: the class `build` returns.
    build: (config, data_info, `ModelParts`) -> a built model_class; it
      makes the kind's own layers (decoder, classifier, ...) and passes
      `parts.options` on to the model.
  """
  _MODEL_KINDS[str(kind)] = ModelKind(model_class, build)


def model_kinds() -> tuple[str, ...]:
  """The registered values of model.kind ("vae", "vib", ...)."""
  return tuple(_MODEL_KINDS)


def model_class(kind: str) -> type[models.LatentVariableModel]:
  """The model class of `kind` (config.model.kind), e.g. `models.VAE`.

  Its class attributes tell code that runs before a model exists what the
  kind needs (`needs_labels`, `models_inputs`).

  Raises:
    ValueError: an unknown kind (the registered ones are listed).
  """
  return _model_kind(kind).model_class


def _model_kind(kind: str) -> ModelKind:
  """The registered `ModelKind` of `kind`; ValueError listing the valid."""
  fields.check_choice("model.kind", kind, model_kinds())
  return _MODEL_KINDS[str(kind)]


def input_likelihood(config: ml_collections.ConfigDict, data_info: Any,
                     num_levels: int | None = None
                     ) -> distributions.Likelihood:
  """A weightless likelihood of x that only normalizes and checks x.

  For a model whose likelihood is not over x (the VIB): it matches how the
  data were preprocessed (levels are divided by L - 1; scaled or binarized
  data are already in [0, 1]; data_info.preprocess picks the likelihood,
  model.likelihood where it is unknown).
  """
  m = config.model
  input_shape = tuple(int(s) for s in fields.info_field(data_info,
                                                        "input_shape"))
  if num_levels is None:
    num_levels = fields.info_field(data_info, "num_levels") or m.num_levels
  preprocess = fields.info_field(data_info, "preprocess")
  input_kind = INPUT_LIKELIHOOD_OF_PREPROCESS.get(preprocess, m.likelihood)
  return distributions.make_likelihood(
      input_kind, input_shape, num_levels, m.gaussian_scale or 1.0)


def build_model(config: ml_collections.ConfigDict,
                data_info: Any) -> models.LatentVariableModel:
  """Builds the (already built) model that `config` describes.

  The shared parts (encoder, flow, prior, the loss options and the seed)
  are made here; the function registered for config.model.kind
  (`register_model_kind`) makes the rest: the `VAE` its decoder and
  likelihood, the `VIB` its classifier.

  Set the mixed-precision policy (config.runtime.mixed_precision) before
  calling this; densities and losses stay float32 either way.

  Args:
    config: the ml_collections config (configs/default.py), checked by
      `config_checks.validate`.
    data_info: object (or dict) with `input_shape` (tuple), `num_classes`
      (int or None), `num_levels` (int or None; default model.num_levels).

  Returns:
    A built model of the class `model_class(config.model.kind)`.

  Raises:
    ValueError: missing data info; on an unchecked config, an unknown name
      (the message lists the valid values).
  """
  m, f, loss = config.model, config.flow, config.loss
  flows.import_modules(f.get("module", ""))
  # The one choice read here: what to build.
  kind = _model_kind(m.kind)
  input_shape = fields.info_field(data_info, "input_shape")
  if not input_shape:
    raise ValueError("data_info.input_shape is missing.")
  input_shape = tuple(int(s) for s in input_shape)
  num_levels = fields.info_field(data_info, "num_levels") or m.num_levels
  latent_dim = int(m.latent_dim)
  num_flows = int(f.num_flows)
  context_dim = int(m.context_dim) if (f.amortized and num_flows) else 0

  network = check_network(config)
  if network == "gated_conv":
    encoder = gated_conv.GatedConvEncoder(
        latent_dim, m.min_scale, context_dim,
        scale_shift=float(m.get("scale_shift", 0.0)),
        centered_inputs=bool(m.get("centered_inputs", False)), name="encoder")
  else:
    encoder = networks.Encoder(
        latent_dim, m.encoder_hidden, m.activation, m.min_scale, context_dim,
        scale_shift=float(m.get("scale_shift", 0.0)),
        centered_inputs=bool(m.get("centered_inputs", False)), name="encoder")
  stack_kwargs = flow_kwargs(config, f.name)
  stack_kwargs["dim"] = latent_dim
  if context_dim:
    stack_kwargs["context_dim"] = context_dim
  flow = flows.make_stack(f.name, num_flows, **stack_kwargs)

  prior_flow = f.name
  if not flows.registry.get_class(prior_flow).invertible:
    prior_flow = "real_nvp"
  prior = distributions.make_prior(
      m.prior, latent_dim, num_components=m.prior_components,
      flow_name=prior_flow, num_flows=models.PRIOR_FLOW_LAYERS,
      flow_kwargs=(flow_kwargs(config, prior_flow) if m.prior == "flow"
                   else None))
  options = dict(
      beta=loss.beta, warmup_steps=loss.warmup_steps,
      estimator=loss.estimator, num_samples=loss.num_samples,
      force_monte_carlo_kl=loss.force_monte_carlo_kl,
      baseline_decay=loss.baseline_decay, seed=config.seed)
  parts = ModelParts(input_shape, num_levels, encoder, flow, prior, options)
  return kind.build(config, data_info, parts)


def _build_vae(config: ml_collections.ConfigDict, data_info: Any,
               parts: ModelParts) -> models.VAE:
  """The VAE: a decoder with the likelihood of x (model.likelihood)."""
  del data_info
  m = config.model
  likelihood = distributions.make_likelihood(
      m.likelihood, parts.input_shape, parts.num_levels, m.gaussian_scale)
  if check_network(config) == "gated_conv":
    decoder = gated_conv.GatedConvDecoder(
        likelihood.num_params, parts.input_shape, name="decoder")
  else:
    decoder = make_decoder(config, likelihood.num_params)
  return models.VAE(parts.input_shape, parts.encoder, parts.flow, decoder,
                    parts.prior, likelihood, **parts.options)


def _build_vib(config: ml_collections.ConfigDict, data_info: Any,
               parts: ModelParts) -> models.VIB:
  """The VIB: a classifier on zK; x only normalized and checked."""
  m = config.model
  num_classes = fields.info_field(data_info, "num_classes")
  if not num_classes:
    raise ValueError("model.kind='vib' needs data_info.num_classes.")
  x_likelihood = input_likelihood(config, data_info, parts.num_levels)
  labels = distributions.CategoricalLabels(num_classes, name="labels")
  classifier = networks.MLP(num_classes, m.decoder_hidden, m.activation,
                            name="classifier")
  return models.VIB(parts.input_shape, parts.encoder, parts.flow, classifier,
                    parts.prior, labels, x_likelihood,
                    predict_samples=config.eval.vib_num_samples,
                    **parts.options)


register_model_kind("vae", models.VAE, _build_vae)
register_model_kind("vib", models.VIB, _build_vib)
