"""What the SavedModel for TensorFlow Serving computes: its signatures.

`make_serving_module(model, config, data_info)` gives the `ServingModule`
that `vib_flows.export.export_model` writes.

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

The graph also rejects NaN/Inf inputs (`CheckNumerics`, the message names the
input); wrong shapes and dtypes are refused by the signatures' input specs.
"""

import tensorflow as tf

from vib_flows import fields
from vib_flows import models


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


def _checked(tensor, name):
  """Runtime checks that name the input: its shape, then finite values.

  The Python signatures refuse wrong shapes and dtypes from their input specs;
  these in-graph checks (Assert, CheckNumerics: C++ ops) make the C++ model
  server refuse a wrong-shaped or non-finite request with a message naming
  the input too, before any layer sees it.

  Args:
    tensor: the signature input [B, *event_shape] (static event shape known).
    name: its signature name ("x" or "z").

  Returns:
    `tensor`, after the checks.
  """
  expected = [int(s) for s in tensor.shape[1:]]
  rank = len(expected) + 1
  shape = tf.shape(tensor)
  # Compares shape[1:] with `expected` even when the rank is wrong.
  padded = tf.concat([shape, tf.zeros([rank], tf.int32)], 0)[1:rank]
  ok = tf.logical_and(tf.equal(tf.size(shape), rank),
                      tf.reduce_all(tf.equal(padded, expected)))
  assertion = tf.debugging.Assert(
      ok, [f"Input {name} must have shape [batch, "
           f"{', '.join(map(str, expected))}] (float32); got shape:", shape],
      name=f"check_{name}_shape")
  with tf.control_dependencies([assertion]):
    tensor = tf.identity(tensor)
  return tf.debugging.check_numerics(
      tensor, f"Input '{name}' holds NaN or infinite values")


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

  Args:
    model: a built `models.VAE` or `models.VIB`.
    kind: "vae" or "vib".
    input_shape: shape of one example x.
    latent_dim: d.
    num_importance_samples: K of the VAE `log_likelihood` signature.
    chunk_size: importance samples per chunk (bounds memory).
    vib_num_samples: S of the VIB `classify` signature.
  """

  def __init__(self, model, kind, input_shape, latent_dim,
               num_importance_samples, chunk_size, vib_num_samples):
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
    x_spec = tf.TensorSpec([None, *input_shape], tf.float32, name="x")
    z_spec = tf.TensorSpec([None, int(latent_dim)], tf.float32, name="z")

    self.encode = tf.function(self._encode, input_signature=[x_spec],
                              autograph=False)
    if kind == "vae":
      self.decode = tf.function(self._decode, input_signature=[z_spec],
                                autograph=False)
      self.log_likelihood = tf.function(
          self._log_likelihood, input_signature=[x_spec], autograph=False)
    else:
      self.classify = tf.function(self._classify, input_signature=[x_spec],
                                  autograph=False)

  @property
  def _model(self):
    return self._ref.model

  def _encode(self, x):
    """X [B, *input_shape] -> z_mean [B, d], z_stddev [B, d], z [B, d]."""
    x = _checked(x, "x")
    out = self._model.encode(x, request_seed(x))
    return {k: tf.cast(out[k], tf.float32) for k in ("z_mean", "z_stddev", "z")}

  def _decode(self, z):
    """Z [B, d] -> x_mean [B, *input_shape]."""
    z = _checked(z, "z")
    return {"x_mean": tf.cast(self._model.decode(z), tf.float32)}

  def _log_likelihood(self, x):
    """X [B, *input_shape] -> elbo [B], log_likelihood [B] (K samples)."""
    x = _checked(x, "x")
    elbo, iw = self._model.log_likelihood(
        x, self.num_importance_samples, request_seed(x),
        chunk_size=self.chunk_size)
    return {"elbo": tf.cast(elbo, tf.float32),
            "log_likelihood": tf.cast(iw, tf.float32)}

  def _classify(self, x):
    """X [B, *input_shape] -> probabilities [B, C], class_ids [B] int64."""
    x = _checked(x, "x")
    probs = tf.cast(
        self._model.predict_proba(x, self.vib_num_samples, request_seed(x)),
        tf.float32)
    return {"probabilities": probs,
            "class_ids": tf.argmax(probs, axis=-1, output_type=tf.int64)}

  def signatures(self):
    """Signature name -> concrete function (serving_default first)."""
    if self.kind == "vae":
      fns = {"serving_default": self.encode, "encode": self.encode,
             "decode": self.decode, "log_likelihood": self.log_likelihood}
    else:
      fns = {"serving_default": self.classify, "classify": self.classify,
             "encode": self.encode}
    return {name: fn.get_concrete_function() for name, fn in fns.items()}


def make_serving_module(model, config, data_info):
  """The `ServingModule` of `model` with the sample counts of `config`."""
  kind = str(config.model.kind)
  fields.check_choice("model.kind", kind, models.MODEL_KINDS)
  k = int(config.export.num_importance_samples)
  if k < 1:
    raise ValueError(
        f"export.num_importance_samples must be >= 1, got {k}.")
  input_shape = tuple(
      int(s) for s in fields.info_field(data_info, "input_shape"))
  return ServingModule(
      model, kind, input_shape, int(config.model.latent_dim), k,
      int(config.eval.importance_chunk_size), int(config.eval.vib_num_samples))
