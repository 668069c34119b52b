"""The sweeps' grids, as data, and the config of each run of a grid.

A grid entry is a dict:
  name       directory name of the configuration (DIR/<name>/seed<k>/);
  base       the configs/<base>.py file the runs start from;
  label      the row label in the results tables;
  overrides  {"section.field": value} applied to the base config;
  beta       (VIB only) the bottleneck weight, for the information plane.
The VIB grid's DETERMINISTIC entry is the plain Keras MLP baseline
(`experiments.sweeps.baseline`), not a VIB.

Grids (`GRIDS`):
  vae_digits: configs/vae_digits.py (17-level categorical likelihood, latent
    16, hidden 256) with no flow; planar K = 4 and 16; radial, IAF, the three
    Sylvester flows, RealNVP and spline with K = 4; each flow global and
    amortized.
  vib_digits: configs/vib_digits.py for beta in VIB_BETAS, without flow and
    with 2 amortized IAF layers, plus the deterministic baseline.
  iaf_digits: K = 4 IAF layers on configs/vae_digits.py, global and amortized,
    for every forget bias in IAF_FORGET_BIASES (2 is the default). The bias
    sets the gate at initialization, sigma = sigmoid(bias): each layer starts
    as z' = sigma z + (1 - sigma) m(z), a contraction by sigma whose MADE
    output m enters scaled by 1 - sigma (0.12 at the default 2).
  synthetic_true: configs/vae_synthetic_true.py (the "synthetic:banana" data,
    latent 2, the decoder fixed to the true network, so the exact gap
    log p(x) - ELBO is the mean KL(q(z|x) || p(z|x))) with no flow; planar
    K = 1, 4 and 16; radial, IAF, the three Sylvester flows, RealNVP and
    spline with K = 4; each flow global and amortized. The Sylvester flows
    use M = 2 orthonormal columns (M <= d = 2) and 2 Householder reflections
    (two reflections of the plane make any rotation).
  synthetic_learned: the same rows on configs/vae_synthetic.py (the decoder
    learned as well).
  digits_protocol: the training protocol of the digits VAE, no flow, one
    change at a time from the 'Deep Generative Modeling' book code's protocol
    (`BOOK_PROTOCOL`: Adamax, batch 64, no KL warm-up, LeakyReLU, up to 1000
    epochs, patience 20), then the single changes that helped, two at a
    time (`PROTOCOL_COMBINATIONS`), plus the protocol configs/vae_digits.py
    shipped before it was chosen this way. Chosen on the validation split,
    never by test numbers.
  digits_defaults: the shipped configs/vae_digits.py (its flow and without
    it) side by side with the book code's protocol.
  digits_priors: the prior of configs/vae_digits.py (standard normal, a
    learned mixture of 10 Gaussians as in VampPrior's MoG baseline, a
    2-layer RealNVP flow prior), each without flow and with the shipped flow.
  The digits defaults are chosen among these runs by the validation -log p(x)
  (`run.validation_metrics`); the grids that ran under the standard normal
  prior keep it (`_STANDARD_PRIOR`) now that configs/vae_digits.py has
  another.
"""

import ast
from collections.abc import Sequence
import copy
import os
from typing import Any

import ml_collections

import experiments
from vib_flows.app import config_files

Entry = dict[str, Any]

DETERMINISTIC = "deterministic"
VIB_BETAS = (1e-4, 1e-3, 1e-2, 1e-1)
IAF_FORGET_BIASES = (0.0, 1.0, 2.0, 4.0)
# The repository's configs/: the experiments run from a checkout.
CONFIG_DIR = experiments.CONFIGS

# (name, flow.name, flow.num_flows) of the VAE grid.
_VAE_FLOWS = (
    ("planar4", "planar", 4),
    ("planar16", "planar", 16),
    ("radial4", "radial", 4),
    ("iaf4", "iaf", 4),
    ("sylvester_orthogonal4", "sylvester_orthogonal", 4),
    ("sylvester_householder4", "sylvester_householder", 4),
    ("sylvester_triangular4", "sylvester_triangular", 4),
    ("real_nvp4", "real_nvp", 4),
    ("spline4", "spline", 4),
)
_SYNTHETIC_FLOWS = (("planar1", "planar", 1),) + _VAE_FLOWS
# Sylvester sizes for the 2-D latent of the synthetic data (M <= d = 2).
_SYLVESTER_2D = {"flow.num_ortho_vectors": 2, "flow.num_householder": 2}
_FORMS = ((False, "global"), (True, "amortized"))
_NO_FLOW = {"flow.num_flows": 0, "flow.amortized": False}
# The digits grids that ran before configs/vae_digits.py chose its prior keep
# the prior they ran with.
_STANDARD_PRIOR = {"model.prior": "standard_normal"}
_VIB_IAF = {"flow.name": "iaf", "flow.num_flows": 2, "flow.amortized": True}

GRIDS: dict[str, tuple[Entry, ...]] = {
    "vae_digits": (
        {"name": "none", "base": "vae_digits", "label": "no flow",
         "overrides": dict(_NO_FLOW, **_STANDARD_PRIOR)},
    ) + tuple(
        {"name": f"{name}_{form}", "base": "vae_digits",
         "label": f"{flow} K={k} {form}",
         "overrides": dict({"flow.name": flow, "flow.num_flows": k,
                            "flow.amortized": amortized}, **_STANDARD_PRIOR)}
        for name, flow, k in _VAE_FLOWS for amortized, form in _FORMS
    ),
    "vib_digits": (
        {"name": DETERMINISTIC, "base": "vib_digits",
         "label": "deterministic MLP (same widths)", "overrides": {}},
    ) + tuple(
        {"name": f"{short}_beta{beta:g}", "base": "vib_digits",
         "label": label, "beta": beta,
         "overrides": dict(overrides, **{"loss.beta": beta})}
        for short, label, overrides in (
            ("none", "no flow", _NO_FLOW),
            ("iaf2_amortized", "iaf K=2 amortized", _VIB_IAF))
        for beta in VIB_BETAS
    ),
    "iaf_digits": tuple(
        {"name": f"iaf4_{form}_bias{bias:g}", "base": "vae_digits",
         "label": f"iaf K=4 {form}, forget bias {bias:g}",
         "overrides": dict({"flow.name": "iaf", "flow.num_flows": 4,
                            "flow.amortized": amortized,
                            "flow.forget_bias": bias}, **_STANDARD_PRIOR)}
        for amortized, form in _FORMS for bias in IAF_FORGET_BIASES
    ),
}


def _flow_grid(base_name: str,
               flows: Sequence[tuple[str, str, int]]) -> tuple[Entry, ...]:
  """"none" plus every (name, flow, K) of `flows`, global and amortized."""
  entries = [{"name": "none", "base": base_name, "label": "no flow",
              "overrides": dict(_NO_FLOW)}]
  for name, flow, k in flows:
    extra = _SYLVESTER_2D if flow.startswith("sylvester") else {}
    for amortized, form in _FORMS:
      entries.append(
          {"name": f"{name}_{form}", "base": base_name,
           "label": f"{flow} K={k} {form}",
           "overrides": dict({"flow.name": flow, "flow.num_flows": k,
                              "flow.amortized": amortized}, **extra)})
  return tuple(entries)


# The book code's protocol, as vib_flows config fields. Keras' leaky_relu
# has slope 0.2 on negative inputs (PyTorch's LeakyReLU: 0.01).
BOOK_PROTOCOL = {
    "optimizer.name": "adamax", "optimizer.learning_rate": 1e-3,
    "train.batch_size": 64, "loss.warmup_steps": 0,
    "model.activation": "leaky_relu", "train.num_epochs": 1000,
    "train.early_stopping_patience": 20,
}
# What configs/vae_digits.py trained with before the protocol was chosen by
# validation (Adam, batch 100, 200 warm-up steps, ReLU, 100 epochs).
_OLD_DIGITS_PROTOCOL = {
    "optimizer.name": "adam", "optimizer.learning_rate": 1e-3,
    "train.batch_size": 100, "loss.warmup_steps": 200,
    "model.activation": "relu", "train.num_epochs": 100,
    "train.early_stopping_patience": 20,
}
# (name, label, changes to BOOK_PROTOCOL) of the protocol search.
_PROTOCOL_CHANGES = (
    ("book", "book protocol", {}),
    ("book_adam", "book, Adam", {"optimizer.name": "adam"}),
    ("book_lr3e-3", "book, learning rate 3e-3",
     {"optimizer.learning_rate": 3e-3}),
    ("book_relu", "book, ReLU", {"model.activation": "relu"}),
    ("book_batch32", "book, batch 32", {"train.batch_size": 32}),
    ("book_batch100", "book, batch 100", {"train.batch_size": 100}),
    ("book_warmup", "book, KL warm-up 320 steps (20 epochs)",
     {"loss.warmup_steps": 320}),
    ("book_patience50", "book, patience 50",
     {"train.early_stopping_patience": 50}),
    ("book_samples4", "book, 4 posterior samples per example",
     {"loss.num_samples": 4}),
)
# Second round: the single changes that lowered the validation loss of the
# first round (Adam, batch 32, learning rate 3e-3), two at a time.
PROTOCOL_COMBINATIONS = (
    ("book_adam+book_batch32", "book, Adam, batch 32"),
    ("book_lr3e-3+book_batch32", "book, learning rate 3e-3, batch 32"),
)
_CHANGES_BY_NAME = {name: changes for name, _, changes in _PROTOCOL_CHANGES}
GRIDS["digits_protocol"] = (
    {"name": "old_default", "base": "vae_digits",
     "label": "old default (Adam, batch 100, warm-up 200 steps, ReLU, "
              "100 epochs)",
     "overrides": dict(_OLD_DIGITS_PROTOCOL, **_NO_FLOW, **_STANDARD_PRIOR)},
) + tuple(
    {"name": name, "base": "vae_digits", "label": label,
     "overrides": dict(BOOK_PROTOCOL, **changes, **_NO_FLOW,
                       **_STANDARD_PRIOR)}
    for name, label, changes in _PROTOCOL_CHANGES
) + tuple(
    {"name": name, "base": "vae_digits", "label": label,
     "overrides": dict(BOOK_PROTOCOL, **_NO_FLOW, **_STANDARD_PRIOR, **{
         key: value for part in name.split("+")
         for key, value in _CHANGES_BY_NAME[part].items()})}
    for name, label in PROTOCOL_COMBINATIONS
)
GRIDS["digits_defaults"] = (
    {"name": "book", "base": "vae_digits",
     "label": "book protocol, no flow",
     "overrides": dict(BOOK_PROTOCOL, **_NO_FLOW, **_STANDARD_PRIOR)},
    {"name": "shipped_no_flow", "base": "vae_digits",
     "label": "configs/vae_digits.py without its flow",
     "overrides": dict(_NO_FLOW)},
    {"name": "shipped", "base": "vae_digits",
     "label": "configs/vae_digits.py as shipped", "overrides": {}},
)

# The prior of the digits VAE under the shipped protocol: the standard normal,
# a learned mixture of 10 Gaussians, a learned flow prior (2 RealNVP layers),
# each without flow and with the shipped flow.
_PRIORS = (
    ("standard", "standard normal prior", _STANDARD_PRIOR),
    ("mixture", "mixture-of-10-Gaussians prior",
     {"model.prior": "mixture", "model.prior_components": 10}),
    # The shipped Sylvester flow has no analytic inverse: the flow prior is
    # 2 RealNVP layers (models.PRIOR_FLOW_LAYERS).
    ("flow_prior", "RealNVP prior (2 layers)", {"model.prior": "flow"}),
)
GRIDS["digits_priors"] = tuple(
    {"name": f"{name}{suffix}", "base": "vae_digits",
     "label": f"{label}, {flow_label}",
     "overrides": dict(overrides, **flow_overrides)}
    for name, label, overrides in _PRIORS
    for suffix, flow_label, flow_overrides in (
        ("_no_flow", "no flow", _NO_FLOW), ("", "the shipped flow", {}))
)

# Alemi et al. 2017's MNIST VIB (configs/vib_mnist.py, its recipe in every
# row): the deterministic network with the same recipe, the VIB, and the VIB
# with an amortized flow posterior (2 IAF layers whose MADEs are 512 wide,
# twice the latent's 256).
GRIDS["vib_mnist"] = (
    {"name": DETERMINISTIC, "base": "vib_mnist",
     "label": "deterministic (same network and recipe, no noise, beta = 0)",
     "overrides": {}},
    {"name": "vib", "base": "vib_mnist", "label": "VIB, beta = 1e-3",
     "beta": 1e-3, "overrides": {}},
    {"name": "vib_iaf2_amortized", "base": "vib_mnist",
     "label": "VIB, beta = 1e-3, iaf K=2 amortized", "beta": 1e-3,
     "overrides": dict(_VIB_IAF, **{"flow.hidden_units": 512,
                                     "model.context_dim": 256})},
)

# Rezende & Mohamed 2015's MLP scale (configs/vae_mnist.py, 784-400-40,
# dynamically binarized MNIST): no flow, their planar flows (K = 10 and 80),
# and IAF, RealNVP and the three Sylvester flows, all amortized.
_MNIST_FLOWS = (
    ("planar10", "planar", 10, {}),
    ("planar80", "planar", 80, {}),
    ("iaf4", "iaf", 4, {"flow.hidden_units": 320}),
    ("real_nvp4", "real_nvp", 4, {"flow.hidden_units": 320}),
    ("sylvester_orthogonal4", "sylvester_orthogonal", 4,
     {"flow.num_ortho_vectors": 32}),
    ("sylvester_householder4", "sylvester_householder", 4,
     {"flow.num_householder": 8}),
    ("sylvester_triangular4", "sylvester_triangular", 4, {}),
)
GRIDS["vae_mnist"] = (
    {"name": "none", "base": "vae_mnist", "label": "no flow",
     "overrides": dict(_NO_FLOW)},
) + tuple(
    {"name": name, "base": "vae_mnist", "label": f"{flow} K={k} amortized",
     "overrides": dict({"flow.name": flow, "flow.num_flows": k,
                        "flow.amortized": True}, **extra)}
    for name, flow, k, extra in _MNIST_FLOWS
)

GRIDS["synthetic_true"] = _flow_grid("vae_synthetic_true", _SYNTHETIC_FLOWS)
GRIDS["synthetic_learned"] = _flow_grid("vae_synthetic", _SYNTHETIC_FLOWS)
SYNTHETIC_SWEEPS = ("synthetic_true", "synthetic_learned")
VIB_SWEEPS = ("vib_digits", "vib_mnist")
PROTOCOL_SWEEPS = ("digits_protocol", "digits_defaults", "digits_priors")
SWEEP_NAMES = tuple(GRIDS)


def grid(sweep: str, only: Sequence[str] | None = None) -> list[Entry]:
  """The entries of sweep `sweep` named in `only` (all if empty), copied.

  Raises:
    ValueError: an unknown sweep or configuration name (the valid ones are
      listed).
  """
  if sweep not in GRIDS:
    raise ValueError(
        f"Unknown sweep {sweep!r}; valid: {', '.join(SWEEP_NAMES)}.")
  return select(copy.deepcopy(list(GRIDS[sweep])), only)


def select(entries: list[Entry], only: Sequence[str] | None) -> list[Entry]:
  """The entries named in `only` (all if empty); unknown names raise."""
  if not only:
    return entries
  names = [e["name"] for e in entries]
  unknown = sorted(set(only) - set(names))
  if unknown:
    raise ValueError(f"Unknown configurations {unknown}; valid: {names}.")
  return [e for e in entries if e["name"] in only]


def parse_settings(settings: Sequence[str]) -> dict[str, Any]:
  """["section.field=value", ...] -> {"section.field": value}.

  Values are read as Python literals where they parse as one (numbers,
  booleans, tuples), else kept as strings (data set names, paths).

  Raises:
    ValueError: an item without "=" or without a "section.field" name.
  """
  parsed = {}
  for item in settings:
    key, sep, text = item.partition("=")
    if not sep or key.count(".") != 1:
      raise ValueError(
          f"--set takes section.field=value items, got {item!r}.")
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    parsed[key] = value
  return parsed


def make_config(entry: Entry, seed: int, epochs: int = 0,
                importance_samples: int = 0,
                base_config: ml_collections.ConfigDict | None = None,
                settings: dict[str, Any] | None = None
                ) -> ml_collections.ConfigDict:
  """The ml_collections config of one run.

  Args:
    entry: a grid entry.
    seed: config.seed.
    epochs: train.num_epochs if > 0 (else the base config's).
    importance_samples: eval.num_importance_samples if > 0.
    base_config: a config to start from instead of configs/<entry base>.py
      (tests pass configs/test.py-sized networks this way).
    settings: {"section.field": value} applied to every run after the
      entry's overrides (the sweep's --set flag, e.g. the data set's path).

  Returns:
    The config (export disabled: sweeps write no SavedModels).
  """
  if base_config is None:
    base_config = base(entry["base"])
  config = base_config.copy_and_resolve_references()
  for key, value in dict(entry["overrides"], **(settings or {})).items():
    section, field = key.split(".")
    config[section][field] = value
  config.seed = int(seed)
  if epochs:
    config.train.num_epochs = int(epochs)
  if importance_samples:
    config.eval.num_importance_samples = int(importance_samples)
  config.export.enabled = False
  return config


_BASE_CONFIGS: dict[str, ml_collections.ConfigDict] = {}


def base(name: str) -> ml_collections.ConfigDict:
  """configs/<name>.py, read once per process.

  A sweep runs for a long time; reading the file once keeps every run of one
  sweep on the same protocol even if the file is edited meanwhile (runs of
  earlier invocations are checked by `aggregate.protocol_mismatches`).
  """
  if name not in _BASE_CONFIGS:
    _BASE_CONFIGS[name] = config_files.load(
        os.path.join(CONFIG_DIR, name + ".py"))
  return _BASE_CONFIGS[name]


# A VAE run re-tested with another K keeps its earlier test ELBO and bound
# under "test_elbo_k<K>" and EARLIER_K_PREFIX + "<K>" in metrics.json
# (`run.reevaluate_importance_samples`); the tables show the bound beside
# the new one.
EARLIER_K_PREFIX = "test_log_likelihood_k"


def run_dir(workdir: str, name: str, seed: int) -> str:
  """DIR/<name>/seed<seed>: the run directory of one configuration and seed."""
  return os.path.join(workdir, name, f"seed{seed}")
