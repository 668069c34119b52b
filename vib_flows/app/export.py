"""Writing SavedModels for TensorFlow Serving: versions, atomically.

`export_model(model, config, data_info)`.

Layout (docs/design.md): `<export.base_dir>/<model name>/<N>/`, N one
more than the largest integer version already there (older versions are left
intact). The SavedModel is written to a hidden temporary directory inside
`<base>/<name>/` (same file system) and renamed to `<N>/` only when complete, so
TensorFlow Serving, which polls `<base>/<name>/` for integer directories, never
sees a half-written version; a failure during the write removes the temporary
directory and leaves no version directory.

What the SavedModel computes (its signatures, deterministic sampling seeded
by the request, the input checks) is `vib_flows.app.serving`; this module
writes it: version directories, the warm-up requests and the metadata file.

Warm-up: `assets.extra/tf_serving_warmup_requests`, a TFRecord file of
`tensorflow.serving.PredictionLog` records (one `PredictRequest` per signature,
a batch of `WARMUP_BATCH_SIZE` zeros), which TensorFlow Serving replays at load
time. It needs `tensorflow-serving-api` (a dependency of setup.py)
(`pip install tensorflow-serving-api`), or `export.warmup_requests = False`.
`assets.extra/vib_flows_export.json` records the config, data info,
signatures and input checks (x's range, log_likelihood's support and row
limit: `ServingModule.input_checks()`) of the export (TensorFlow Serving
ignores it).
"""

import json
import os
import re
import socket
import tempfile

from absl import logging
import numpy as np
import tensorflow as tf

from vib_flows import fields
from vib_flows.app import serving

# The signatures' names are part of this module's API too (__all__).
from vib_flows.app.serving import ServingModule
from vib_flows.app.serving import make_serving_module
from vib_flows.app.serving import request_seed

__all__ = [
    "NonFiniteWeightsError", "ServingModule", "check_finite_weights",
    "existing_versions", "export_model", "make_serving_module", "model_name",
    "remove_stale_exports", "request_seed", "warmup_requests"]

WARMUP_FILE = "tf_serving_warmup_requests"
METADATA_FILE = "vib_flows_export.json"
WARMUP_BATCH_SIZE = 1
_TMP_PREFIX = ".tmp-export-"


class NonFiniteWeightsError(ValueError):
  """The model holds NaN or infinite weights; it is never exported."""


# --------------------------------------------------------------- names, paths
def model_name(config, data_info=None):
  """The TF Serving model name: export.model_name, else "<kind>_<data name>".

  The data name is sanitized to [A-Za-z0-9_.-]: "digits" -> "vae_digits",
  "npz:/data/my set.npz" -> "vae_npz_my_set",
  "mnist:3.0.1" -> "vib_mnist_3.0.1".

  Raises:
    ValueError: export.model_name is not a plain directory name.
  """
  name = str(config.export.model_name or "")
  if name:
    if (name in (".", "..") or "/" in name or os.sep in name
        or name.startswith(_TMP_PREFIX)):
      raise ValueError(
          f"export.model_name {name!r} must be a plain directory name (no "
          "'/', not '.' or '..')."
      )
    return name
  data_name = str(getattr(data_info, "name", None) or config.data.name)
  if data_name.startswith("npz:"):
    data_name = "npz_" + os.path.splitext(os.path.basename(data_name[4:]))[0]
  data_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", data_name).strip("_.-")
  return f"{config.model.kind}_{data_name or 'data'}"


def existing_versions(model_dir):
  """Sorted integer versions in model_dir.

  The versions are the names of all-digit subdirectories.
  """
  if not tf.io.gfile.isdir(model_dir):
    return []
  return sorted(
      int(n.rstrip("/")) for n in tf.io.gfile.listdir(model_dir)
      if n.rstrip("/").isdigit()
      and tf.io.gfile.isdir(os.path.join(model_dir, n.rstrip("/")))
  )


# ------------------------------------------------------------------ checks
def check_finite_weights(model):
  """Raises NonFiniteWeightsError naming the weights that hold NaN or Inf."""
  bad = []
  for v in model.weights:
    value = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
    if np.issubdtype(value.dtype, np.floating) and not np.all(
        np.isfinite(value)):
      count = int(value.size - np.count_nonzero(np.isfinite(value)))
      bad.append(f"{v.path if hasattr(v, 'path') else v.name} ({count} of "
                 f"{value.size} values)")
  if bad:
    raise NonFiniteWeightsError(
        "Refusing to export a model with non-finite (NaN or infinite) "
        f"weights: {', '.join(bad)}. Export the last good checkpoint instead."
    )


def _warmup_protos():
  try:
    # pylint: disable=g-import-not-at-top
    from tensorflow_serving.apis import model_pb2
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_log_pb2
  except ImportError as e:
    raise ImportError(
        "export.warmup_requests needs the package "
        "tensorflow-serving-api (pip install tensorflow-serving-api), or set "
        "--config.export.warmup_requests=False."
    ) from e
  return model_pb2, predict_pb2, prediction_log_pb2


# --------------------------------------------------------------- warm-up
def warmup_requests(signatures, model_name_, batch_size=WARMUP_BATCH_SIZE):
  """PredictionLog protos, one PredictRequest per signature (inputs of zeros).

  Args:
    signatures: name -> concrete function
      (`serving.ServingModule.signatures()`).
    model_name_: the TF Serving model name written in each request.
    batch_size: rows of each warm-up input.

  Returns:
    A list of `tensorflow.serving.PredictionLog`.
  """
  model_pb2, predict_pb2, prediction_log_pb2 = _warmup_protos()
  logs = []
  for name, fn in signatures.items():
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name_, signature_name=name))
    for key, spec in _input_specs(fn).items():
      shape = [batch_size] + [int(s) for s in spec.shape[1:]]
      request.inputs[key].CopyFrom(
          tf.make_tensor_proto(np.zeros(shape, spec.dtype.as_numpy_dtype)))
    logs.append(prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)))
  return logs


def _input_specs(fn):
  """Input name -> TensorSpec of a signature's concrete function."""
  args, kwargs = fn.structured_input_signature
  specs = dict(kwargs)
  for spec in args:
    specs[spec.name] = spec
  return specs


def _write_warmup(directory, signatures, name):
  extra = os.path.join(directory, "assets.extra")
  tf.io.gfile.makedirs(extra)
  with tf.io.TFRecordWriter(os.path.join(extra, WARMUP_FILE)) as writer:
    for log in warmup_requests(signatures, name):
      writer.write(log.SerializeToString())


def _write_metadata(directory, config, data_info, module, name):
  extra = os.path.join(directory, "assets.extra")
  tf.io.gfile.makedirs(extra)
  info = {k: fields.info_field(data_info, k) for k in
          ("name", "input_shape", "num_classes", "num_levels", "preprocess")}
  info["input_shape"] = list(info["input_shape"] or ())
  signatures = module.signatures()
  meta = {
      "model_name": name,
      "data_info": info,
      "input_checks": module.input_checks(),
      "signatures": {
          sig: {"inputs": {k: [s.dtype.name, s.shape.as_list()]
                           for k, s in _input_specs(fn).items()},
                "outputs": {k: [s.dtype.name, s.shape.as_list()]
                            for k, s in fn.structured_outputs.items()}}
          for sig, fn in signatures.items()
      },
      "config": json.loads(config.to_json_best_effort())
                if hasattr(config, "to_json_best_effort") else None,
  }
  with tf.io.gfile.GFile(os.path.join(extra, METADATA_FILE), "w") as f:
    json.dump(meta, f, indent=2, sort_keys=True)


# ----------------------------------------------------------------- export
def _ensure_built(model, data_info):
  if model.weights:
    return
  shape = tuple(
      int(s) for s in fields.info_field(data_info, "input_shape"))
  x = tf.zeros((2,) + shape, tf.float32)
  model.per_example_loss({"x": x, "y": tf.zeros([2], tf.int32)},
                         tf.constant(1.0), tf.constant([0, 0], tf.int32))


def _is_local(path):
  return "://" not in str(path)


def export_model(model, config, data_info, base_dir=None):
  """Writes `model` as a new TF Serving version; returns the version directory.

  Args:
    model: a built `models.VAE` or `models.VIB` (config.model.kind).
    config: the run config (model.kind, model.latent_dim, data.name,
      eval.importance_chunk_size, eval.vib_num_samples, export.*).
    data_info: `DataInfo` (or dict) with `input_shape` and `name`.
    base_dir: overrides `export.base_dir`.

  Returns:
    Path of the new version directory `<base>/<name>/<N>` (absolute for local
    paths).

  Raises:
    NonFiniteWeightsError: a weight holds NaN or Inf (nothing is written).
    ImportError: export.warmup_requests is on and tensorflow-serving-api is
      not installed (nothing is written).
    ValueError: bad export.model_name / export.num_importance_samples /
      export.max_log_likelihood_rows.
  """
  _ensure_built(model, data_info)
  check_finite_weights(model)
  name = model_name(config, data_info)
  with_warmup = bool(config.export.warmup_requests)
  if with_warmup:
    _warmup_protos()  # Fail before writing anything.
  module = serving.make_serving_module(model, config, data_info)
  signatures = module.signatures()

  base = base_dir if base_dir is not None else config.export.base_dir
  model_dir = os.path.join(base, name)
  if _is_local(model_dir):
    model_dir = os.path.abspath(model_dir)
  tf.io.gfile.makedirs(model_dir)
  if _is_local(model_dir):
    remove_stale_exports(model_dir)
    tmp = tempfile.mkdtemp(prefix=_tmp_prefix(), dir=model_dir)
  else:  # Object stores: no atomic rename; best effort.
    tmp = os.path.join(model_dir, _TMP_PREFIX + os.urandom(6).hex())
  try:
    tf.saved_model.save(
        module, tmp, signatures=signatures,
        options=tf.saved_model.SaveOptions(
            experimental_custom_gradients=False))
    if with_warmup:
      _write_warmup(tmp, signatures, name)
    _write_metadata(tmp, config, data_info, module, name)
    path = _publish(tmp, model_dir)
  except BaseException:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.rmtree(tmp)
    raise
  logging.info("Exported %s version %s to %s", name,
               os.path.basename(path), path)
  return path


def _host():
  """This machine's name, with "-" (the separator below) and others as "_"."""
  return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())


def _tmp_prefix(pid=None):
  """`.tmp-export-<host>-<pid>-`: names the process writing the directory."""
  return f"{_TMP_PREFIX}{_host()}-{pid or os.getpid()}-"


def _process_alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Alive, another user's.
    return True
  return True


def remove_stale_exports(model_dir):
  """Removes temporary export directories of dead processes on this host.

  An export killed outright (SIGKILL, power loss) cannot clean up its
  `.tmp-export-<host>-<pid>-*` directory; Serving ignores it (not a number),
  and the next export on the same host removes it once that process is gone.
  Directories of live processes or other hosts are left alone.

  Returns:
    The removed paths.
  """
  pattern = re.compile(
      re.escape(_TMP_PREFIX) + r"(?P<host>.+)-(?P<pid>\d+)-[^-]+$")
  host = _host()
  removed = []
  for name in os.listdir(model_dir):
    match = pattern.match(name)
    path = os.path.join(model_dir, name)
    if (match and match["host"] == host and os.path.isdir(path)
        and not _process_alive(int(match["pid"]))):
      tf.io.gfile.rmtree(path)
      logging.warning("Removed %s, left by an interrupted export.", path)
      removed.append(path)
  return removed


def _publish(tmp, model_dir, attempts=100):
  """Renames tmp to the next free integer version directory; returns it."""
  for _ in range(attempts):
    versions = existing_versions(model_dir)
    version = (versions[-1] + 1) if versions else 1
    path = os.path.join(model_dir, str(version))
    if tf.io.gfile.exists(path):
      continue
    try:
      if _is_local(model_dir):
        os.rename(tmp, path)  # Atomic; fails if another export made `path`.
      else:
        tf.io.gfile.rename(tmp, path, overwrite=False)
      return path
    except OSError:
      if not tf.io.gfile.exists(path):
        raise
  raise RuntimeError(f"Could not claim a new version directory in {model_dir}.")
