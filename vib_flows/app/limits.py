"""Size limits of a run, checked before a model is built.

A config can ask for a model that cannot be built or trained on the machine
(`--config.flow.num_flows=1000`: docs/performance.md, "Size limits"). Two
checks refuse such sizes in one line naming the field, the value or
estimate, and the limit (a ValueError; `faults.ConfigError` on the command
line, status 2):

  check_config(config)  bounds that need no data (`config_checks.validate`
                        calls it): flow layers and passes, latent size,
                        widths, layers, reflections, components, samples.
  check(config, splits) after the data are loaded (`run_state.build_state`
                        calls it): the estimated memory of training, against
                        the machine's (or its cgroup's limit); one warning
                        line when the estimate fits but exceeds half of it
                        or the memory available, and one when XLA is to
                        compile more than `XLA_WARN_FLOW_PASSES` passes.

`estimate(config, input_shape, ...)` is the arithmetic behind `check`, from
the config and the data's shape alone (nothing is built):

  parameters  every weight of the model `model_builder.build_model` builds
              (encoder, posterior flows with their amortized context heads,
              decoder or classifier, prior, likelihood), as `count_params()`
              counts them (tests/app/test_limits.py compares the two).
  memory      bytes of the training process at its peak: the TensorFlow
              runtime, the data (twice: the arrays and the tf.data cache),
              the weights with their copies (the gradients, the optimizer's
              slots, the kept best weights, the weight averages), the
              activations of a training step at the global batch size (or
              of an evaluation chunk, if larger), and the traced graph (per
              flow pass; XLA's compile takes six times more). The estimate
              against measured peaks: docs/performance.md, "Size limits".
              XLA's compile grows faster than the flow passes beyond a few
              dozen: a warning says so.
  flow_layers the posterior's flow layers (planar maps count one each) plus
              the prior's: each is a block of the traced graph.
  flow_passes the conditioner passes those layers trace (MAF's forward and
              IAF's inverse take d passes of their MADE): the graph size.

Flows registered outside vib_flows (flow.module) have no formula: their
weights count as 0 and only the layer count applies to them.
"""

import dataclasses
import math
import os

from absl import logging

from vib_flows.app import faults

# Refused above these (ValueError naming the field, the value and the bound).
MAX_FLOW_LAYERS = 256  # flow.num_flows: graph blocks to build and compile.
MAX_FLOW_PASSES = 4096  # Conditioner passes of all flow layers (graph size).
MAX_LATENT_DIM = 4096  # model.latent_dim.
MAX_WIDTH = 16384  # Each hidden width; model.context_dim; flow.hidden_units.
MAX_HIDDEN_LAYERS = 64  # Layers of model.encoder_hidden, decoder_hidden.
MAX_HOUSEHOLDER = 256  # flow.num_householder: reflections per layer.
MAX_PRIOR_COMPONENTS = 4096  # model.prior_components.
MAX_SAMPLES = 4096  # loss.num_samples, eval.vib_num_samples.
# Memory: refused above the machine's memory; a warning above this fraction
# of it (or above the memory available now).
WARN_MEMORY_FRACTION = 0.5

_FLOAT_BYTES = 4  # float32 weights and activations (mixed precision: less).
_RUNTIME_BYTES = 1 << 30  # Python, TensorFlow, Keras, TFP: ~0.85 GiB RSS.
# Forward activations are kept for the backward pass, which makes their
# gradients and temporaries of the same sizes.
_TRAIN_ACTIVATION_FACTOR = 3
_EVAL_ACTIVATION_FACTOR = 2
# The traced and XLA-compiled graph of the training step, MiB per flow pass
# (a layer, a planar map, a pass of MAF's MADE): peak memory over no flow of
# configs/test.py for one epoch (docs/performance.md, "Size limits").
_GRAPH_MIB_PER_PASS = {"planar": 12, "radial": 12, "sylvester": 35}
_GRAPH_MIB_PER_PASS_DEFAULT = 16
# Without XLA (train.jit_compile off) the traced graph alone, a fraction of
# the compiled one.
_GRAPH_WITHOUT_XLA = 1 / 6
# Above this many flow passes (planar maps are cheap) XLA's compile grows
# faster than the passes; a warning says so.
XLA_WARN_FLOW_PASSES = 32
# log_likelihood's rows per chunk (models.MAX_CHUNK_ROWS; not imported: this
# module imports no TensorFlow).
_MAX_CHUNK_ROWS = 8192
_PRIOR_FLOW_LAYERS = 2  # models.PRIOR_FLOW_LAYERS.
_INVERTIBLE = ("iaf", "maf", "real_nvp", "spline")
_OPTIMIZER_SLOTS = {"adam": 2, "adamax": 2, "rmsprop": 1, "sgd": 0}
# van den Berg et al.'s gated convolutions (gated_conv.py): (filters, kernel,
# output side) of each layer on 28x28x1 images.
_GATED_ENCODER = ((32, 5, 28), (32, 5, 14), (64, 5, 14), (64, 5, 7),
                  (64, 5, 7), (256, 7, 1))
_GATED_DECODER = ((64, 7, 7), (64, 5, 7), (32, 5, 14), (32, 5, 14),
                  (32, 5, 28), (32, 5, 28))
_GATED_FEATURES = 256


@dataclasses.dataclass(frozen=True)
class Estimate:
  """What `estimate` computes; see the module docstring.

  Attributes:
    parameters: weights of the model (`count_params()`).
    parameter_parts: {"encoder", "flow", "decoder" or "classifier", "prior",
      "likelihood": count}.
    flow_layers: flow layers of the posterior and the prior.
    flow_passes: conditioner passes of those layers in the traced graph.
    memory_bytes: the estimated peak memory of training.
    memory_parts: {"runtime", "data", "weights", "activations", "graph":
      bytes}.
    activations_of: "training" or "evaluation", whichever needs more.
  """

  parameters: int
  parameter_parts: dict
  flow_layers: int
  flow_passes: int
  memory_bytes: int
  memory_parts: dict
  activations_of: str = "training"


def _gib(num_bytes):
  return f"{num_bytes / float(1 << 30):.3g} GiB"


def _int(config_section, name, default=0):
  value = config_section.get(name, default)
  return int(value) if value is not None else default


def _dense(n_in, n_out):
  return n_in * n_out + n_out


def _amortizable(size, context_dim):
  """A flow parameter of `size` numbers: its bias, and its context kernel."""
  return size + context_dim * size


def _conditioner(n_in, n_out, num_params, hidden, context_dim):
  """Weights of a `ConditionerMLP` with two hidden layers."""
  count = (n_in * hidden if n_in else 0) + hidden * hidden + 2 * hidden
  count += 2 * context_dim * hidden
  return count + hidden * n_out * num_params + n_out * num_params


def _flow_options(config, name):
  """The flow's options, as `model_builder.flow_kwargs` makes them."""
  latent_dim = int(config.model.latent_dim)
  options = {
      "hidden_units": int(config.flow.hidden_units),
      "num_ortho_vectors": int(config.flow.num_ortho_vectors) or latent_dim,
      "num_householder": int(config.flow.num_householder),
  }
  if name == config.flow.name:
    options.update(dict(config.flow.get("options") or {}))
  return options


def _option(options, name, default):
  """An integer option of the flow; `default` where absent or not a number."""
  try:
    value = int(options.get(name) or default)
  except (TypeError, ValueError, OverflowError):
    return default
  return value if value > 0 else default


def _layer(name, dim, context_dim, options):
  """(weights, conditioner passes forward, passes inverse) of one flow layer.

  Planar: per map (`make_stack` makes one layer of K maps; the caller
  multiplies). None for a flow without a formula.
  """
  c = context_dim
  hidden = _option(options, "hidden_units", 64)
  if name == "planar":
    return 2 * _amortizable(dim, c) + _amortizable(1, c), 1, 1
  if name == "radial":
    return _amortizable(dim, c) + 2 * _amortizable(1, c), 1, 1
  if name.startswith("sylvester_"):
    m = dim
    if name == "sylvester_orthogonal":
      m = _option(options, "num_ortho_vectors", dim)
      q = _amortizable(dim * m, c)
    elif name == "sylvester_householder":
      q = _amortizable(_option(options, "num_householder", 4) * dim, c)
    else:
      q = 0
    triangle = m * (m + 1) // 2
    return q + 2 * _amortizable(triangle, c) + _amortizable(m, c), 1, 1
  if name in ("iaf", "maf"):
    weights = _conditioner(dim, dim, 2, hidden, c)
    return weights, (dim if name == "maf" else 1), (dim if name == "iaf"
                                                     else 1)
  if name in ("real_nvp", "spline"):
    num_params = 2
    if name == "spline":
      num_params = 3 * _option(options, "num_bins", 8) - 1
    n_b = (dim + 1) // 2
    return _conditioner(dim - n_b, n_b, num_params, hidden, c), 1, 1
  return None


def _layer_activations(name, dim, options, num_maps=1):
  """Floats per posterior sample of one flow layer's forward pass."""
  hidden = _option(options, "hidden_units", 64)
  if name == "planar":
    return 6 * dim * num_maps
  if name.startswith("sylvester_"):
    m = _option(options, "num_ortho_vectors", dim)
    if name != "sylvester_orthogonal":
      m = dim
    return 4 * dim + 6 * m
  if name == "maf":  # d sequential MADE passes, all kept for the gradient.
    return dim * (4 * hidden + 6 * dim)
  if name == "iaf":
    return 4 * hidden + 6 * dim
  if name == "spline":
    bins = _option(options, "num_bins", 8)
    return 4 * hidden + dim * (6 + 10 * bins)
  return 4 * hidden + 6 * dim


def _example_flow_activations(name, dim, context_dim, options, num_maps=1):
  """Floats per example of an amortized layer: its per-example parameters."""
  if not context_dim:
    return 0
  if name in ("iaf", "maf", "real_nvp", "spline"):  # context @ V_k, 2 layers.
    return 3 * 2 * _option(options, "hidden_units", 64)
  weights = _layer(name, dim, context_dim, options)
  if weights is None:
    return 0
  per_example = weights[0] // (context_dim + 1) * num_maps
  if name == "sylvester_householder":  # Q [d, d] after each reflection.
    per_example += _option(options, "num_householder", 4) * dim * dim
  elif name == "sylvester_orthogonal":  # The QR of [d, M].
    per_example += 4 * dim * _option(options, "num_ortho_vectors", dim)
  return 3 * per_example


def _graph_mib(name, xla):
  """MiB of the traced (and compiled) graph per pass of flow `name`."""
  family = "sylvester" if str(name).startswith("sylvester_") else str(name)
  mib = _GRAPH_MIB_PER_PASS.get(family, _GRAPH_MIB_PER_PASS_DEFAULT)
  return mib if xla else mib * _GRAPH_WITHOUT_XLA


def _mlp(n_in, widths, n_out):
  count, last = 0, n_in
  for width in widths:
    count += _dense(last, width)
    last = width
  return count + _dense(last, n_out)


def _mlp_activations(n_in, widths, n_out):
  return n_in + sum(2 * w for w in widths) + 3 * n_out


def _gated(layers, channels_in):
  count = 0
  for filters, kernel, _ in layers:
    count += 2 * (kernel * kernel * channels_in * filters + filters)
    channels_in = filters
  return count


def _gated_activations(layers):
  return sum(3 * side * side * filters for filters, _, side in layers)


def estimate(config, input_shape, num_classes=None, num_levels=None,
             num_examples=0):
  """The size of the model and of its training; see the module docstring.

  Args:
    config: the run's ml_collections config (validated).
    input_shape: the shape of one example (`DataInfo.input_shape`).
    num_classes: the number of labels (the VIB's classifier).
    num_levels: intensity levels of a categorical likelihood (default
      model.num_levels).
    num_examples: examples of all splits held in memory.

  Returns:
    An `Estimate`.
  """
  # Imported here: the module's import stays free of TensorFlow.
  from vib_flows.app import model_builder  # pylint: disable=g-import-not-at-top
  m, f = config.model, config.flow
  # A model of x has a decoder of x's likelihood parameters (the VAE); the
  # others a classifier of num_classes logits (the VIB).
  models_inputs = model_builder.model_class(m.kind).models_inputs
  size = int(math.prod(int(s) for s in input_shape))
  latent_dim = int(m.latent_dim)
  num_flows = int(f.num_flows)
  context_dim = int(m.context_dim) if (f.amortized and num_flows) else 0
  network = str(m.get("network", "mlp"))
  parts = {}
  # Encoder: hidden layers, loc and scale heads, the flows' context head.
  if network == "gated_conv":
    parts["encoder"] = _gated(_GATED_ENCODER, 1) + 2 * _dense(
        _GATED_FEATURES, latent_dim)
    if context_dim and context_dim != _GATED_FEATURES:
      parts["encoder"] += _dense(_GATED_FEATURES, context_dim)
    encoder_floats = size + _gated_activations(_GATED_ENCODER)
  else:
    hidden = [int(w) for w in m.encoder_hidden]
    last = hidden[-1] if hidden else size
    parts["encoder"] = (_mlp(size, hidden, latent_dim)
                        + _dense(last, latent_dim)
                        + (_dense(last, context_dim) if context_dim else 0))
    encoder_floats = _mlp_activations(2 * size, hidden, 2 * latent_dim)
  encoder_floats += 3 * context_dim

  # Posterior flows.
  options = _flow_options(config, f.name)
  maps = f.name == "planar"
  layer = _layer(f.name, latent_dim, context_dim, options) if num_flows else (
      0, 0, 0)
  if layer is None:
    logging.info("flow.name=%r has no size formula: its weights are not "
                 "counted.", f.name)
    layer = (0, 1, 1)
  parts["flow"] = layer[0] * num_flows
  flow_passes = layer[1] * num_flows
  flow_floats = (_layer_activations(f.name, latent_dim, options, num_flows)
                 if maps else num_flows * _layer_activations(
                     f.name, latent_dim, options))
  example_flow_floats = _example_flow_activations(
      f.name, latent_dim, context_dim, options,
      num_maps=num_flows if maps else 1) * (1 if maps else num_flows)
  # Evaluating (no backward pass), a layer's tensors are freed once the next
  # layer has used them: two layers' at a time, and the log-dets.
  eval_flow_floats = flow_floats * min(flow_passes, 2) // max(
      flow_passes, 1) + flow_passes

  # Prior.
  flow_layers = num_flows
  prior = str(m.prior)
  parts["prior"] = 0
  if prior == "mixture":
    k = int(m.prior_components)
    parts["prior"] = 2 * k * latent_dim + k
    flow_floats += 3 * k * latent_dim
    eval_flow_floats += 3 * k * latent_dim
  elif prior == "flow":
    prior_name = f.name if f.name in _INVERTIBLE else "real_nvp"
    prior_options = _flow_options(config, prior_name)
    prior_layer = _layer(prior_name, latent_dim, 0, prior_options)
    parts["prior"] = prior_layer[0] * _PRIOR_FLOW_LAYERS
    flow_passes += prior_layer[2] * _PRIOR_FLOW_LAYERS
    flow_layers += _PRIOR_FLOW_LAYERS
    prior_floats = _PRIOR_FLOW_LAYERS * prior_layer[2] * _layer_activations(
        prior_name, latent_dim, prior_options)
    flow_floats += prior_floats
    eval_flow_floats += prior_floats

  # Decoder (VAE) or classifier (VIB), and the likelihood's own weights.
  eval_decoder_floats = None
  parts["likelihood"] = 0
  if not models_inputs:
    out = int(num_classes or 10)
    parts["classifier"] = _mlp(latent_dim, [int(w) for w in m.decoder_hidden],
                               out)
    decoder_floats = _mlp_activations(latent_dim, m.decoder_hidden, out)
  else:
    likelihood = str(m.likelihood)
    levels = int(num_levels or m.num_levels)
    out = size * levels if likelihood == "categorical" else size
    if likelihood == "gaussian" and not float(m.gaussian_scale):
      parts["likelihood"] = size
    if network == "gated_conv":
      parts["decoder"] = _gated(_GATED_DECODER, latent_dim) + 32 + 1
      decoder_floats = _gated_activations(_GATED_DECODER) + 3 * out
      # Without a backward pass a layer's tensors are freed once used: the
      # largest layer's (h, gate, product) bound it (docs/performance.md,
      # "Size limits").
      eval_decoder_floats = 3 * max(side * side * filters
                                    for filters, _, side in _GATED_DECODER)
      eval_decoder_floats += 3 * out
    elif str(m.get("decoder", "learned")) == "true":
      parts["decoder"] = 0
      decoder_floats = _mlp_activations(latent_dim, (), out) + 256
    else:
      hidden = [int(w) for w in m.decoder_hidden]
      parts["decoder"] = _mlp(latent_dim, hidden, out)
      decoder_floats = _mlp_activations(latent_dim, hidden, out)
    decoder_floats += 2 * size  # The likelihood's log-probabilities.
  parts["model"] = 1  # The score-function baseline.
  parameters = sum(parts.values())

  # Memory: weights and their copies; activations of a step (or of an
  # evaluation chunk); the data; the runtime.
  copies = 1 + 1 + 1  # Weights, gradients, kept best weights.
  copies += _OPTIMIZER_SLOTS.get(str(config.optimizer.name), 2)
  copies += 1 if float(config.train.get("ema_decay", 0.0) or 0.0) else 0
  samples = int(config.loss.num_samples)
  per_sample = flow_floats + decoder_floats
  eval_per_sample = eval_flow_floats + (
      decoder_floats if eval_decoder_floats is None else eval_decoder_floats)
  per_example = encoder_floats + example_flow_floats + samples * per_sample
  batch = int(config.train.batch_size)
  train_bytes = (_TRAIN_ACTIVATION_FACTOR * _FLOAT_BYTES * batch
                 * per_example)
  if not models_inputs:
    rows = int(config.eval.batch_size) * int(config.eval.vib_num_samples)
  else:
    chunk = min(int(config.eval.importance_chunk_size),
                int(config.eval.num_importance_samples))
    rows = min(int(config.eval.batch_size) * chunk, _MAX_CHUNK_ROWS)
  # Evaluating, a layer's per-example parameters are freed once used: two
  # layers' at a time.
  layers = 1 if maps else max(num_flows, 1)
  eval_bytes = _EVAL_ACTIVATION_FACTOR * _FLOAT_BYTES * (
      int(config.eval.batch_size) * (
          encoder_floats + example_flow_floats * min(layers, 2) // layers)
      + rows * eval_per_sample)
  memory_parts = {
      "runtime": _RUNTIME_BYTES,
      "data": 2 * _FLOAT_BYTES * size * int(num_examples),
      "weights": _FLOAT_BYTES * parameters * copies,
      "activations": max(train_bytes, eval_bytes),
      "graph": int(_graph_mib(f.name, bool(config.train.jit_compile))
                   * flow_passes * (1 << 20)),
  }
  return Estimate(
      parameters=parameters, parameter_parts=parts, flow_layers=flow_layers,
      flow_passes=flow_passes, memory_bytes=sum(memory_parts.values()),
      memory_parts=memory_parts,
      activations_of="training" if train_bytes >= eval_bytes else "evaluation")


def _meminfo():
  """{field: bytes} of /proc/meminfo ({} where there is none)."""
  found = {}
  try:
    with open("/proc/meminfo", encoding="ascii") as f:
      for line in f:
        name, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
          found[name] = int(fields[0]) * (1024 if fields[1:] == ["kB"] else 1)
  except OSError:
    pass
  return found


def _cgroup_limit():
  """The memory limit of this process's cgroup (v2 or v1), or None."""
  for path in ("/sys/fs/cgroup/memory.max",
               "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
    try:
      with open(path, encoding="ascii") as f:
        text = f.read().strip()
    except OSError:
      continue
    if text.isdigit() and int(text) < (1 << 60):
      return int(text)
  return None


def machine_memory():
  """(bytes, where from): the memory this process may use at most.

  The physical memory (os.sysconf, else /proc/meminfo's MemTotal), or the
  cgroup's limit when lower (a container). (0, "unknown") where neither is
  readable.
  """
  total, source = 0, "unknown"
  try:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    source = "the machine's memory"
  except (ValueError, OSError, AttributeError):
    total = _meminfo().get("MemTotal", 0)
    source = "MemTotal of /proc/meminfo" if total else source
  limit = _cgroup_limit()
  if limit and (not total or limit < total):
    total, source = limit, "the cgroup's memory limit"
  return total, source


def available_memory():
  """Bytes available now (/proc/meminfo's MemAvailable), or None."""
  return _meminfo().get("MemAvailable")


def _refuse(field, value, limit, what=""):
  raise ValueError(f"{field}={value} exceeds the limit of {limit}{what}.")


def _check_bound(field, value, limit, what=""):
  if value > limit:
    _refuse(field, value, limit, what)


def check_config(config):
  """Refuses sizes beyond the bounds that need no data (module docstring).

  Run after the fields' own checks (`config_checks.validate`), so the
  values are positive numbers.

  Raises:
    ValueError: one line naming the field, its value and the limit.
  """
  m, f = config.model, config.flow
  _check_bound("flow.num_flows", f.num_flows, MAX_FLOW_LAYERS,
               " flow layers (each is a block of the graph that is built and "
               "compiled; 1000 took 23 minutes and 10.9 GB)")
  _check_bound("model.latent_dim", m.latent_dim, MAX_LATENT_DIM)
  _check_bound("model.context_dim", m.context_dim, MAX_WIDTH)
  for field in ("encoder_hidden", "decoder_hidden"):
    widths = tuple(m[field])
    _check_bound(f"model.{field} (number of layers)", len(widths),
                 MAX_HIDDEN_LAYERS)
    for width in widths:
      _check_bound(f"model.{field} (each width)", width, MAX_WIDTH)
  _check_bound("flow.hidden_units", f.hidden_units, MAX_WIDTH)
  _check_bound("flow.num_householder", f.num_householder, MAX_HOUSEHOLDER)
  _check_bound("model.prior_components", m.prior_components,
               MAX_PRIOR_COMPONENTS)
  _check_bound("loss.num_samples", config.loss.num_samples, MAX_SAMPLES)
  _check_bound("eval.vib_num_samples", config.eval.vib_num_samples,
               MAX_SAMPLES)
  num_flows = int(f.num_flows)
  if num_flows:
    layer = _layer(str(f.name), int(m.latent_dim), 0, _flow_options(
        config, str(f.name)))
    passes = num_flows * (layer[1] if layer else 1)
    if passes > MAX_FLOW_PASSES:
      raise ValueError(
          f"flow.num_flows={num_flows} of flow.name={f.name!r} with "
          f"model.latent_dim={m.latent_dim} traces {passes} conditioner "
          f"passes (one per latent dimension and layer), beyond the limit "
          f"of {MAX_FLOW_PASSES}; use fewer layers or a flow whose forward "
          "is one pass (iaf, real_nvp, spline).")


# The fields that set the size of a run, named by a refusal.
_SIZES = ("train.batch_size", "model.encoder_hidden", "model.decoder_hidden",
          "model.latent_dim", "flow.num_flows", "flow.hidden_units",
          "model.context_dim")
# The field behind each part of the estimate (`_culprit`).
_FIELDS = {"encoder": "model.encoder_hidden", "flow": "flow.num_flows",
           "decoder": "model.decoder_hidden",
           "classifier": "model.decoder_hidden",
           "prior": "model.prior_components", "likelihood": "data.name",
           "model": "flow.num_flows"}


def _culprit(config, found):
  """(field, value) of the config field behind the largest memory part."""
  parts = found.memory_parts
  largest = max(parts, key=parts.get)
  if largest == "data":
    field = "data.name"
  elif largest == "graph":
    field = "flow.num_flows"
  elif largest == "weights":
    part = max(found.parameter_parts, key=found.parameter_parts.get)
    field = _FIELDS.get(part, "flow.num_flows")
    if part == "encoder" and str(config.model.get("network", "mlp")) != "mlp":
      field = "model.latent_dim"
  elif found.activations_of == "evaluation":
    field = "eval.batch_size"
  else:
    field = "train.batch_size"
  section, name = field.split(".")
  return field, config[section][name]


def check(config, splits):
  """Refuses a run whose training cannot fit in memory; warns when large.

  Args:
    config: the run's config (validated).
    splits: the loaded `DataSplits` (their `info` and example counts).

  Returns:
    The `Estimate`.

  Raises:
    faults.ConfigError: the estimated memory exceeds the machine's (one
      line: the field that costs most, the estimate, the limit).
  """
  info = splits.info
  num_examples = sum(
      int(split.x.shape[0]) for split in (splits.train, splits.validation,
                                          splits.test) if split is not None)
  found = estimate(config, info.input_shape, info.num_classes,
                   info.num_levels, num_examples)
  logging.info(
      "Size estimate: %d parameters (%s), %d flow layers, %d conditioner "
      "passes, memory %s (%s).", found.parameters,
      ", ".join(f"{k} {v}" for k, v in found.parameter_parts.items()),
      found.flow_layers, found.flow_passes, _gib(found.memory_bytes),
      ", ".join(f"{k} {_gib(v)}" for k, v in found.memory_parts.items()))
  total, source = machine_memory()
  field, value = _culprit(config, found)
  largest = max(found.memory_parts, key=found.memory_parts.get)
  detail = (f"{found.parameters} parameters; {largest} "
            f"{_gib(found.memory_parts[largest])}")
  if total and found.memory_bytes > total:
    raise faults.ConfigError(
        f"{field}={value}: training needs an estimated "
        f"{_gib(found.memory_bytes)} ({detail}), more than {source}, "
        f"{_gib(total)}. Reduce {field} (or another size: "
        f"{', '.join(f for f in _SIZES if f != field)}).")
  available = available_memory()
  if total and (found.memory_bytes > WARN_MEMORY_FRACTION * total or (
      available is not None and found.memory_bytes > available)):
    logging.warning(
        "Large run: an estimated %s of memory to train (%s); %s is %s, %s "
        "available now.", _gib(found.memory_bytes), detail, source,
        _gib(total), _gib(available) if available is not None else "?")
  if (config.train.jit_compile and str(config.flow.name) != "planar"
      and found.flow_passes > XLA_WARN_FLOW_PASSES):
    logging.warning(
        "Large graph: %d flow passes (flow.num_flows=%s of %s) to compile "
        "with XLA, whose time and memory grow faster than the passes (64 "
        "MAF passes: over 29 minutes and 8.4 GB on 2 cores); "
        "train.jit_compile=False compiles them in about a minute.",
        found.flow_passes, config.flow.num_flows, config.flow.name)
  return found
