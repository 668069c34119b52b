"""What the SavedModel for TensorFlow Serving computes: its signatures.

`make_serving_module(model, config, data_info)` gives the `ServingModule`
that `vib_flows.app.export.export_model` writes.

Signatures (named float32 inputs with a batch dimension B; d = model.latent_dim;
S = eval.vib_num_samples; K = export.num_importance_samples):

  VAE  serving_default = encode
       encode          x [B, *input_shape] -> z_mean [B, d], z_stddev [B, d],
                                              z [B, d] (one flow sample zK)
       decode          z [B, d] -> x_mean [B, *input_shape] (likelihood mean)
       log_likelihood  x [B, *input_shape] -> elbo [B], log_likelihood [B]
                       (importance-weighted estimate of log p(x), nats)
  VIB  serving_default = classify
       classify        x [B, *input_shape] -> probabilities [B, num_classes]
                       (mean of p(y|zK) over S posterior samples),
                       class_ids [B] int64 (argmax)
       encode          as for the VAE

x is in the representation the model was trained on (`data_info.preprocess`,
e.g. integer levels 0..16 as float32 for the digits).

Sampling needs no Python state and no seed input: each sampling signature draws
with stateless random ops seeded by `request_seed(x)`, a 64-bit fingerprint of
the bytes of the whole request tensor (the `Fingerprint` op). So the C++ model
server samples without Python, and the same request always gets the same
answer (the same example inside a different batch gets another sample).

Input checks (the contract; docs/serving.md gives the reasons): a request
the model cannot answer is refused with InvalidArgument, never answered
silently. Each signature checks, in this order and with graph ops the C++
runtime runs (Assert, CheckNumerics; no PyFunc), so that the Python loader,
the C API and TensorFlow Serving give the same message, which names the
function ("encode" also for the VAE's serving_default, "classify" for the
VIB's) and the input:
  1. the shape: x [batch, *input_shape], z [batch, d];
  2. log_likelihood only: at most `max_log_likelihood_rows` rows (its cost
     grows with the rows; the message says to split the request);
  3. finite values (no NaN/Inf);
  4. x only: values in the data's representation range (`input_range`:
     [0, L-1] for integer levels, else [0, 1]), not clamped;
  5. log_likelihood only: x in the likelihood's support, where it is
     narrower: {0, 1} for a Bernoulli likelihood, integers for a categorical
     one (a log-probability elsewhere is not a log-likelihood);
and the outputs are checked to be finite (an overflow is refused, not
returned as NaN).
"""

import tensorflow as tf

from vib_flows import distributions
from vib_flows import fields
from vib_flows.models import latent


def request_seed(x):
  """Stateless seed of a request: int32 [2] from a fingerprint of x's bytes.

  Args:
    x: any tensor (the whole request batch).

  Returns:
    int32 [2], the same for the same bytes, shape and dtype; only C++ ops
    (Reshape, Fingerprint, Bitcast), so it runs in TensorFlow Serving.
  """
  flat = tf.reshape(x, [1, -1])
  fingerprint = tf.fingerprint(flat)  # uint8 [1, 8] (farmhash64).
  return tf.bitcast(tf.reshape(fingerprint, [2, 4]), tf.int32)


def input_range(data_info):
  """(low, high) of x's representation: [0, L-1] for levels, else [0, 1].

  Args:
    data_info: `DataInfo` (or dict) with `preprocess` and `num_levels`.
  """
  if fields.info_field(data_info, "preprocess") == "levels":
    return 0.0, float(int(fields.info_field(data_info, "num_levels")) - 1)
  return 0.0, 1.0


def _text(value):
  """A numeric tensor as text: "3, 64, 1" for a vector, "0.5" for a scalar."""
  if value.dtype.is_floating:
    strings = tf.strings.as_string(value, shortest=True)
  else:
    strings = tf.strings.as_string(value)
  return tf.strings.reduce_join(strings, separator=", ")


def _after(tensor, ok, message, name):
  """`tensor`, once `ok` holds; else InvalidArgument "assertion failed: [...]".

  Args:
    tensor: passed on (an identity that waits for the assertion).
    ok: scalar bool, computed at run time.
    message: list of Python strings and scalar string tensors, joined.
    name: the assertion's op name.
  """
  assertion = tf.debugging.Assert(ok, [tf.strings.join(message)], name=name)
  with tf.control_dependencies([assertion]):
    return tf.identity(tensor)


def _check_shape(tensor, function, name):
  """Refuses a request whose shape is not [batch, *event_shape].

  The comparison is on the shape as text ("3, 64, 1" against "<digits>,
  64"): a test of the rank (`tf.rank`, the length of `tf.shape`) is folded to
  a constant by Grappler, which takes the signature's static shape [None,
  64] for granted although no runtime checks fed tensors against it, so a
  rank-3 request [B, 64, 1] passed silently.
  """
  event = [int(s) for s in tensor.shape[1:]]
  got = _text(tf.shape(tensor))
  ok = tf.strings.regex_full_match(got, "[0-9]+" + "".join(
      f", {d}" for d in event))
  shape = ", ".join(str(d) for d in event)
  return _after(tensor, ok, [
      f"{function}: {name} must have shape [batch, {shape}] (one example is "
      f"[{shape}]); got [", got, "]"], f"check_{name}_shape")


def _check_rows(tensor, function, name, max_rows):
  """Refuses a request of more than `max_rows` rows (None: no limit)."""
  if max_rows is None:
    return tensor
  rows = tf.shape(tensor)[0]
  return _after(tensor, rows <= max_rows, [
      f"{function}: {name} may hold at most {max_rows} rows per request "
      "(export.max_log_likelihood_rows); got ", tf.strings.as_string(rows),
      f": split the request into requests of at most {max_rows} rows"],
                f"check_{name}_rows")


def _check_finite(tensor, function, name):
  """Refuses NaN or infinite values (CheckNumerics: InvalidArgument)."""
  return tf.debugging.check_numerics(
      tensor, f"{function}: {name} holds NaN or infinite values")


def _check_range(tensor, function, name, value_range, meaning):
  """Refuses values outside [low, high] (finite values: checked before)."""
  low, high = value_range
  ok = tf.reduce_all(tf.logical_and(tensor >= low, tensor <= high))
  return _after(tensor, ok, [
      f"{function}: {name} must be in [{low:g}, {high:g}] ({meaning}); got "
      "values in [", _text(tf.reduce_min(tensor)), ", ",
      _text(tf.reduce_max(tensor)), "]"], f"check_{name}_range")


def _check_support(tensor, function, name, support):
  """Refuses values outside the likelihood's support (None: no check).

  Args:
    tensor: x, finite and in range (checked before).
    function: the signature's function name, for the message.
    name: the input's name, for the message.
    support: "binary" ({0, 1}) or "integer" (integers; the range check gives
      0..L-1), or None.
  """
  if support is None:
    return tensor
  if support == "binary":
    bad = tf.logical_and(tf.not_equal(tensor, 0.0), tf.not_equal(tensor, 1.0))
    what = (f"{name} must be binary, 0 or 1: the Bernoulli likelihood "
            "p(x|z) is defined on {0, 1} only; got ")
    which = " values that are not 0 or 1, e.g. "
  else:
    bad = tf.not_equal(tensor, tf.round(tensor))
    what = (f"{name} must hold integer levels: the categorical likelihood "
            "p(x|z) is defined on them only; got ")
    which = " non-integer values, e.g. "
  flat = tf.reshape(tensor, [-1])
  flat_bad = tf.reshape(bad, [-1])
  example = tf.concat([tf.boolean_mask(flat, flat_bad), [0.0]], 0)[0]
  return _after(tensor, tf.logical_not(tf.reduce_any(bad)), [
      f"{function}: {what}",
      tf.strings.as_string(tf.math.count_nonzero(flat_bad)), " of ",
      tf.strings.as_string(tf.size(flat)), which, _text(example)],
                f"check_{name}_support")


def _finite_outputs(outputs, function):
  """The outputs, each refused (InvalidArgument) if it holds NaN or Inf."""
  return {k: tf.debugging.check_numerics(
      v, f"{function}: output {k} is not finite for this request")
          if v.dtype.is_floating else v for k, v in outputs.items()}


def _support_of(likelihood):
  """"binary", "integer" or None: where log_likelihood's x must lie."""
  if isinstance(likelihood, distributions.BernoulliLikelihood):
    return "binary"
  if isinstance(likelihood, distributions.CategoricalLikelihood):
    return "integer"
  return None


class _Ref:
  """Holds the Keras model out of sight of SavedModel dependency tracking."""

  __slots__ = ("model",)

  def __init__(self, model):
    self.model = model


class ServingModule(tf.Module):
  """The exported object: the model's weights and the serving tf.functions.

  Only the model's tf.Variables are tracked (not the Keras objects), so the
  SavedModel loads without Keras or vib_flows, and in a TF1-style session
  (restore op of the saver_def, as TensorFlow Serving does). `signatures()`
  returns the name -> concrete function dict for `tf.saved_model.save`.

  The signatures are the model's (`model.serving_signatures`, the first is
  serving_default; `model.serve` computes their outputs); each is also an
  attribute of the module, e.g. `module.encode`.

  Args:
    model: a built `models.LatentVariableModel` (a `VAE`, a `VIB`, ...).
    kind: the model kind (config.model.kind); names the module.
    input_shape: shape of one example x.
    latent_dim: d.
    num_importance_samples: K of the VAE `log_likelihood` signature.
    chunk_size: importance samples per chunk (bounds memory).
    vib_num_samples: S of the VIB `classify` signature.
    input_range: (low, high) of x's values (`input_range(data_info)`), or
      None: any finite x.
    max_log_likelihood_rows: most rows of a request to a signature whose
      cost grows with the rows (`Signature.limit_rows`: the VAE's
      `log_likelihood`), or None: no limit.
  """

  def __init__(self, model, kind, input_shape, latent_dim,
               num_importance_samples, chunk_size, vib_num_samples,
               input_range=None, max_log_likelihood_rows=None):
    super().__init__(name=f"{kind}_serving")
    self._ref = _Ref(model)  # Not trackable: Keras objects stay out.
    # The tf.Variables themselves, not their Keras wrappers: Keras 3 exports a
    # wrapper as a second, fresh tf.Variable that the TF1-style restore
    # (saver_def, used by TensorFlow Serving's C++ loader) fills while the
    # functions read the original, which then stays uninitialized.
    self.model_variables = [getattr(v, "value", v) for v in model.weights]
    self.kind = kind
    self.num_importance_samples = int(num_importance_samples)
    self.chunk_size = int(max(1, min(chunk_size, num_importance_samples)))
    self.vib_num_samples = int(vib_num_samples)
    self.counts = latent.SampleCounts(
        importance_samples=self.num_importance_samples,
        chunk_size=self.chunk_size,
        predictive_samples=self.vib_num_samples)
    self.input_range = (None if input_range is None else
                        tuple(float(v) for v in input_range))
    specs = dict(model.serving_signatures)  # Name -> `Signature`.
    limited = any(spec.limit_rows for spec in specs.values())
    self.max_log_likelihood_rows = (
        None if max_log_likelihood_rows is None or not limited
        else int(max_log_likelihood_rows))
    # Where x must lie for the signatures that ask (`Signature.in_support`):
    # the support of the likelihood of x.
    in_support = any(spec.in_support for spec in specs.values())
    self.log_likelihood_support = (
        _support_of(model.input_likelihood) if in_support else None)
    input_specs = {
        "x": tf.TensorSpec([None, *input_shape], tf.float32, name="x"),
        "z": tf.TensorSpec([None, int(latent_dim)], tf.float32, name="z")}
    # The names only: each function is tracked once, as its attribute.
    self._signature_names = tuple(specs)
    for name, spec in specs.items():
      setattr(self, name, tf.function(
          self._signature_function(name, spec),
          input_signature=[input_specs[spec.input]], autograph=False))

  @property
  def _model(self):
    return self._ref.model

  def _checked_x(self, x, function, spec):
    """X after the checks of the module docstring (shape, rows, values)."""
    x = _check_shape(x, function, "x")
    if spec.limit_rows:
      x = _check_rows(x, function, "x", self.max_log_likelihood_rows)
    x = _check_finite(x, function, "x")
    if self.input_range is not None:
      x = _check_range(x, function, "x", self.input_range,
                       "the representation the model was trained on")
    if spec.in_support:
      x = _check_support(x, function, "x", self.log_likelihood_support)
    return x

  def input_checks(self):
    """What the signatures refuse, as data (written to the export metadata)."""
    return {
        "x_range": (None if self.input_range is None
                    else list(self.input_range)),
        "log_likelihood_support": self.log_likelihood_support,
        "max_log_likelihood_rows": self.max_log_likelihood_rows,
    }

  def _signature_function(self, name, spec):
    """The Python function of signature `name`: checks, the model, checks.

    x inputs are checked as the module docstring says and seed the sampling
    (`request_seed`); z inputs are checked for shape and finite values.
    """

    def function(inputs):
      if spec.input == "x":
        inputs = self._checked_x(inputs, name, spec)
      else:
        inputs = _check_finite(_check_shape(inputs, name, spec.input), name,
                               spec.input)
      outputs = self._model.serve(name, inputs, request_seed(inputs),
                                  self.counts)
      return _finite_outputs(
          {k: tf.cast(v, tf.float32) if v.dtype.is_floating else v
           for k, v in outputs.items()}, name)

    return function

  def signatures(self):
    """Signature name -> concrete function (serving_default first)."""
    fns = {name: getattr(self, name) for name in self._signature_names}
    fns = {"serving_default": fns[self._signature_names[0]], **fns}
    return {name: fn.get_concrete_function() for name, fn in fns.items()}


def make_serving_module(model, config, data_info):
  """The `ServingModule` of `model`: sample counts and limits of `config`.

  x's range comes from `data_info` (`input_range`), the log_likelihood
  request limit from export.max_log_likelihood_rows.
  """
  kind = str(config.model.kind)
  k = int(config.export.num_importance_samples)
  if k < 1:
    raise ValueError(
        f"export.num_importance_samples must be >= 1, got {k}.")
  max_rows = int(config.export.max_log_likelihood_rows)
  if max_rows < 1:
    raise ValueError(
        f"export.max_log_likelihood_rows must be >= 1, got {max_rows}.")
  input_shape = tuple(
      int(s) for s in fields.info_field(data_info, "input_shape"))
  return ServingModule(
      model, kind, input_shape, int(config.model.latent_dim), k,
      int(config.eval.importance_chunk_size), int(config.eval.vib_num_samples),
      input_range=input_range(data_info), max_log_likelihood_rows=max_rows)
