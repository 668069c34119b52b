"""Checks a config before any work is done.

Errors are `faults.ConfigError` (a ValueError; exit status 2 on the command
line) and name the field and the problem. Every float field must be finite:
`nan <= 0` is False, so each bound is checked with the value's finiteness.

Unknown fields are refused earlier, by the locked ml_collections config
(`config_flags.DEFINE_config_file(..., lock_config=True)` in app/cli.py).
Data set names are checked by `vib_flows.data.load`, which knows the sources.
"""

import math
import numbers

from vib_flows import distributions
from vib_flows import fields
from vib_flows import flows
from vib_flows import networks
from vib_flows import objectives
from vib_flows import optimizers
from vib_flows.app import distribute
from vib_flows.app import faults
from vib_flows.app import limits
from vib_flows.app import model_builder
from vib_flows.app import robustness
from vib_flows.data import preprocess

_choice = fields.check_choice


def _real(field, value):
  """Refuses a value that is not a number (a string, a list, ...)."""
  if isinstance(value, str) or not isinstance(value, numbers.Real):
    raise TypeError(f"{field} must be a number, got {_shown(value)}.")
  return value


def _shown(value):
  """repr(value) on one line (a ConfigDict's repr spans lines)."""
  return " ".join(repr(value).split())


def _sequence(field, value, what):
  """Refuses a value that is not a tuple or list (of `what`)."""
  if not isinstance(value, (tuple, list)):
    raise TypeError(f"{field} must be a tuple of {what}, got {_shown(value)}.")
  return value


def _finite(value):
  """math.isfinite, also for ints too large for a float (they are finite)."""
  return isinstance(value, numbers.Integral) or math.isfinite(value)


def _positive(field, value, allow_zero=False):
  """Refuses a value < 0 (<= 0 unless allow_zero), None, NaN or infinite."""
  bound = ">= 0" if allow_zero else "> 0"
  if value is not None and not _finite(_real(field, value)):
    raise ValueError(f"{field} must be a finite number {bound}, got {value}.")
  if value is None or (value < 0 if allow_zero else value <= 0):
    raise ValueError(f"{field} must be {bound}, got {value}.")


def _in_interval(field, value, low, high, closed_high=False):
  """Refuses a value outside [low, high) (or [low, high]), or not finite."""
  inside = (value is not None and _finite(_real(field, value))
            and low <= value
            and (value <= high if closed_high else value < high))
  if not inside:
    bracket = "]" if closed_high else ")"
    raise ValueError(
        f"{field} must be in [{low}, {high}{bracket}, got {value}.")


def _check_training_recipe(config):
  """The optimizer's schedule and moments, the weight averaging, the seeds."""
  optimizer = config.optimizer
  beta_1 = optimizer.get("beta_1", 0.9)
  _in_interval("optimizer.beta_1", beta_1, 0.0, 1.0)
  if beta_1 != 0.9 and optimizer.name not in ("adam", "adamax"):
    raise ValueError(
        f"optimizer.beta_1={beta_1} applies to adam and adamax only, not "
        f"optimizer.name={optimizer.name!r}.")
  _positive("optimizer.decay_every_epochs",
            optimizer.get("decay_every_epochs", 0), allow_zero=True)
  decay_rate = _real("optimizer.decay_rate", optimizer.get("decay_rate", 1.0))
  if not (_finite(decay_rate) and 0.0 < decay_rate <= 1.0):
    raise ValueError(
        f"optimizer.decay_rate must be in (0, 1], got {decay_rate}.")
  _in_interval("train.ema_decay", config.train.get("ema_decay", 0.0), 0.0,
               1.0)
  _positive("data.binarization_seed", config.data.get("binarization_seed", 0),
            allow_zero=True)
  _positive("data.num_classes", config.data.get("num_classes", 0),
            allow_zero=True)
  scale_shift = _real("model.scale_shift", config.model.get("scale_shift", 0.0))
  if not _finite(scale_shift):
    raise ValueError(f"model.scale_shift must be finite, got {scale_shift}.")


def _check_attack_epsilons(config, field):
  """eval.fgsm_epsilons / eval.pgd_epsilons: budgets in [0, 1] of a VIB."""
  name = f"eval.{field}"
  epsilons = tuple(_sequence(name, config.eval.get(field, ()) or (),
                             "numbers"))
  for eps in epsilons:
    if (isinstance(eps, bool) or not isinstance(eps, (int, float))
        or not (math.isfinite(eps) and 0.0 <= eps <= 1.0)):
      raise ValueError(
          f"{name} must hold finite numbers in [0, 1], got {epsilons!r}.")
  if epsilons and config.model.kind != "vib":
    raise ValueError(
        f"{name} applies to the VIB (a classifier) only, got "
        f"model.kind={config.model.kind!r}; set {name}=().")
  if epsilons and config.data.preprocess == "levels":
    raise ValueError(
        f"{name} needs inputs in [0, 1], but data.preprocess="
        "'levels' gives integer intensities; use 'scale'.")


def _check_attacks(config):
  """The robustness evaluation: FGSM and PGD budgets, PGD's steps, starts."""
  _check_attack_epsilons(config, "fgsm_epsilons")
  _check_attack_epsilons(config, "pgd_epsilons")
  steps = config.eval.get("pgd_steps", robustness.DEFAULT_PGD_STEPS)
  if (isinstance(steps, bool) or not isinstance(steps, numbers.Integral)
      or steps < 1):
    raise ValueError(f"eval.pgd_steps must be an integer >= 1, got {steps!r}.")
  restarts = config.eval.get("pgd_restarts", 1)
  if (isinstance(restarts, bool) or not isinstance(restarts, numbers.Integral)
      or restarts < 1):
    raise ValueError(
        f"eval.pgd_restarts must be an integer >= 1 (1: PGD from x alone), "
        f"got {restarts!r}.")


def validate(config):
  """Raises `faults.ConfigError` naming the first impossible field of `config`.

  `faults.ConfigError` is a ValueError; a value of the wrong type is one
  too (the checks raise TypeError for it).
  """
  with faults.mistakes_are(faults.ConfigError, (ValueError, TypeError)):
    _validate(config)


def _validate(config):
  """The checks of `validate`; each raises ValueError."""
  _choice("model.kind", config.model.kind, model_builder.model_kinds())
  _choice("model.likelihood", config.model.likelihood,
          distributions.likelihood_names())
  _choice("model.prior", config.model.prior, distributions.prior_names())
  module = config.flow.get("module", "")
  if not isinstance(module, str):
    _sequence("flow.module", module, "module names")
  flows.import_modules(module)
  _choice("flow.name", config.flow.name, flows.names())
  options = config.flow.get("options") or {}
  if not hasattr(options, "keys"):
    raise TypeError(
        f"flow.options must be a ConfigDict of options, got {_shown(options)}.")
  try:
    flows.check_options(config.flow.name, dict(options))
  except ValueError as error:  # The flow's words; the field it comes from.
    raise ValueError(f"flow.options: {error}") from None
  _choice("loss.estimator", config.loss.estimator, objectives.ESTIMATORS)
  _choice("optimizer.name", config.optimizer.name, optimizers.names())
  _choice("runtime.strategy", config.runtime.strategy, distribute.STRATEGIES)
  _choice("data.preprocess", config.data.preprocess, preprocess.PREPROCESS)
  decoder = config.model.get("decoder", "learned")
  _choice("model.decoder", decoder, networks.DECODERS)
  if decoder == "true":
    model_builder.check_true_decoder(config)
  model_builder.check_network(config)
  _positive("model.latent_dim", config.model.latent_dim)
  _positive("model.context_dim", config.model.context_dim)
  _positive("model.min_scale", config.model.min_scale)
  for field in ("encoder_hidden", "decoder_hidden"):
    for width in _sequence(f"model.{field}", config.model[field], "widths"):
      _positive(f"model.{field} (each width)", width)
  if config.model.likelihood == "categorical":
    num_levels = _real("model.num_levels", config.model.num_levels)
    if not (_finite(num_levels) and num_levels >= 2):
      raise ValueError(
          f"model.num_levels must be >= 2, got {config.model.num_levels}."
      )
  _positive("model.gaussian_scale", config.model.gaussian_scale, True)
  _positive("model.prior_components", config.model.prior_components)
  _positive("flow.num_flows", config.flow.num_flows, allow_zero=True)
  _positive("flow.hidden_units", config.flow.hidden_units)
  _positive("flow.num_ortho_vectors", config.flow.num_ortho_vectors, True)
  if config.flow.num_ortho_vectors > config.model.latent_dim:
    raise ValueError(
        f"flow.num_ortho_vectors={config.flow.num_ortho_vectors} exceeds "
        f"model.latent_dim={config.model.latent_dim}."
    )
  _positive("flow.num_householder", config.flow.num_householder)
  if not _finite(_real("flow.forget_bias", config.flow.forget_bias)):
    raise ValueError(
        f"flow.forget_bias must be finite, got {config.flow.forget_bias}.")
  _positive("loss.beta", config.loss.beta, allow_zero=True)
  _positive("loss.warmup_steps", config.loss.warmup_steps, allow_zero=True)
  _positive("loss.num_samples", config.loss.num_samples)
  baseline_decay = _real("loss.baseline_decay", config.loss.baseline_decay)
  if not 0.0 <= baseline_decay < 1.0:
    raise ValueError(
        "loss.baseline_decay must be in [0, 1), got "
        f"{config.loss.baseline_decay}."
    )
  _positive("optimizer.learning_rate", config.optimizer.learning_rate)
  _positive("optimizer.clipnorm", config.optimizer.clipnorm, allow_zero=True)
  _check_training_recipe(config)
  num_epochs = _real("train.num_epochs", config.train.num_epochs)
  if not (_finite(num_epochs) and num_epochs >= 1):
    raise ValueError(
        f"train.num_epochs must be >= 1, got {config.train.num_epochs} (a run "
        "of 0 epochs would evaluate and export an untrained model).")
  _positive("train.batch_size", config.train.batch_size)
  _positive("train.steps_per_call", config.train.steps_per_call)
  _positive("train.checkpoint_every_epochs",
            config.train.checkpoint_every_epochs, True)
  _positive("train.image_summaries_every_epochs",
            config.train.image_summaries_every_epochs, True)
  _positive("train.checkpoint_every_steps", config.train.checkpoint_every_steps,
            True)
  _positive("train.early_stopping_patience",
            config.train.early_stopping_patience, True)
  num_samples = _real("eval.num_importance_samples",
                      config.eval.num_importance_samples)
  if not (_finite(num_samples) and num_samples >= 1):
    raise ValueError(
        "eval.num_importance_samples must be >= 1, got "
        f"{config.eval.num_importance_samples}."
    )
  _positive("eval.importance_chunk_size", config.eval.importance_chunk_size)
  _positive("eval.batch_size", config.eval.batch_size)
  _positive("eval.vib_num_samples", config.eval.vib_num_samples)
  _check_attacks(config)
  _positive("runtime.virtual_cpu_devices", config.runtime.virtual_cpu_devices,
            True)
  _positive("runtime.intra_op_threads", config.runtime.intra_op_threads, True)
  _positive("runtime.inter_op_threads", config.runtime.inter_op_threads, True)
  num_samples = _real("export.num_importance_samples",
                      config.export.num_importance_samples)
  if not (_finite(num_samples) and num_samples >= 1):
    raise ValueError(
        "export.num_importance_samples must be >= 1, got "
        f"{config.export.num_importance_samples}."
    )
  _positive("export.max_log_likelihood_rows",
            config.export.max_log_likelihood_rows)
  if not str(config.export.base_dir):
    raise ValueError("export.base_dir must not be empty.")
  limits.check_config(config)  # Sizes that cannot be built (graph, widths).
