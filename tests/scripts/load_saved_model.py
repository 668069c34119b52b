"""Loads exported SavedModels in a process where vib_flows cannot be imported.

Usage: python -I load_saved_model.py REQUESTS.npz OUT_PREFIX DIR [DIR ...]

Run with `python -I` (no PYTHONPATH, no current directory on sys.path). The
venv's editable install of vib_flows adds a meta-path finder through a .pth
file; this script removes it (and any sys.path entry holding a vib_flows
package) before importing anything else, then checks that `import vib_flows`
fails. Only TensorFlow and NumPy are imported.

For every DIR, every signature is called with the inputs of REQUESTS.npz named
like the signature's inputs ("x", "z"); outputs go to OUT_PREFIX.npz under
"<dir index>/<signature>/<output>". For the first DIR, each signature input is
also sent with the wrong dtype (int32), the wrong width, and the wrong rank
(rank 1, and rank 3 [B, width, 1]), to
the signature and to the restored tf.function of the same name; the error
types and messages go to OUT_PREFIX.json with the signatures' specs, the
vib_flows import error and whether keras or vib_flows were imported. The
first DIR is also run as TensorFlow Serving's C++ loader runs it (TF1 session,
saver_def restore, SignatureDef tensor names): outputs "session/<sig>/<out>";
tests/app/test_serving_c.py runs the C loader itself.

Arrays of REQUESTS.npz named "extra/<signature>/<input>/<case>" are sent, each
alone, to that signature of the first DIR: the error (or None) goes to
OUT_PREFIX.json under "extra"/<case>, the outputs of an answered request to
OUT_PREFIX.npz under "extra/<case>/<output>".
"""

import importlib
import json
import os
import sys


def _block_vib_flows():
  sys.meta_path[:] = [
      f for f in sys.meta_path
      if "editable" not in getattr(f, "__module__", "")
      and "editable" not in type(f).__module__
  ]
  sys.path_hooks[:] = [
      h for h in sys.path_hooks if "editable" not in repr(h)
  ]
  sys.path[:] = [
      p for p in sys.path
      if p and not os.path.isdir(os.path.join(p, "vib_flows"))
  ]
  sys.path_importer_cache.clear()
  for name in list(sys.modules):
    if name == "vib_flows" or name.startswith("vib_flows."):
      del sys.modules[name]
  try:
    importlib.import_module("vib_flows")
  except ImportError as e:
    return f"{type(e).__name__}: {e}"
  return None


IMPORT_ERROR = _block_vib_flows()
if IMPORT_ERROR is None:
  sys.exit("vib_flows is importable in the loader process: refusing to run.")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position  # noqa: E402
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position  # noqa: E402


def _input_specs(fn):
  args, kwargs = fn.structured_input_signature
  specs = dict(kwargs)
  for spec in args:
    specs[spec.name] = spec
  return specs


def _describe(fn):
  return {
      "inputs": {k: [s.dtype.name, s.shape.as_list()]
                 for k, s in _input_specs(fn).items()},
      "outputs": {k: [s.dtype.name, s.shape.as_list()]
                  for k, s in fn.structured_outputs.items()},
  }


def _error(call):
  try:
    call()
  except Exception as e:  # pylint: disable=broad-except
    return {"type": type(e).__name__, "message": str(e)[:2000]}
  return None


def _bad_requests(loaded, requests):
  """Error of each wrong request: {signature: {input: {case: error}}}."""
  result = {}
  for sig, fn in loaded.signatures.items():
    restored = getattr(loaded, sig, None) if sig != "serving_default" else None
    result[sig] = {}
    for name in _input_specs(fn):
      good = np.asarray(requests[name])
      bad = {
          "dtype": tf.constant(good.astype(np.int32)),
          "width": tf.constant(np.concatenate([good, good[:, :1]], axis=1)),
          "rank": tf.constant(good[:, 0]),
          "rank3": tf.constant(good[..., None]),
      }
      cases = {}
      for case, value in bad.items():
        # _error calls its argument at once; the defaults bind this
        # iteration's values all the same.
        cases[case] = _error(lambda v=value, f=fn, n=name: f(**{n: v}))
        if restored is not None:
          cases["function_" + case] = _error(
              lambda v=value, r=restored: r(v))
      result[sig][name] = cases
  return result


def _extra_requests(loaded, requests, outputs):
  """Sends each "extra/<signature>/<input>/<case>" request; {case: error}."""
  errors = {}
  for key, value in requests.items():
    if not key.startswith("extra/"):
      continue
    _, sig, name, case = key.split("/")
    answer = {}
    errors[case] = _error(lambda s=sig, n=name, v=value, a=answer: a.update(
        loaded.signatures[s](**{n: tf.constant(v)})))
    for out, tensor in answer.items():
      outputs[f"extra/{case}/{out}"] = tensor.numpy()
  return errors


def _session_outputs(directory, requests):
  """Runs every signature the way TensorFlow Serving's C++ loader does.

  A TF1 graph + session: the MetaGraph is imported, variables are restored by
  the saver_def's restore op, and each SignatureDef's tensors are fed and
  fetched by name. Returns {"session/<signature>/<output>": array}.
  """
  outputs = {}
  with tf.Graph().as_default() as graph:
    with tf.compat.v1.Session(graph=graph) as sess:
      meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], directory)
      for sig, sig_def in meta.signature_def.items():
        if sig.startswith("__"):  # __saved_model_init_op: not a signature.
          continue
        feed = {graph.get_tensor_by_name(info.name): requests[key]
                for key, info in sig_def.inputs.items()}
        names = sorted(sig_def.outputs)
        values = sess.run(
            [graph.get_tensor_by_name(sig_def.outputs[k].name) for k in names],
            feed)
        for key, value in zip(names, values):
          outputs[f"session/{sig}/{key}"] = value
  return outputs


def main(argv):
  requests_path, out_prefix, dirs = argv[1], argv[2], argv[3:]
  requests = dict(np.load(requests_path))
  outputs, report = {}, {"signatures": {}, "errors": None}
  for i, directory in enumerate(dirs):
    loaded = tf.saved_model.load(directory)
    report["signatures"][str(i)] = {}
    for sig, fn in loaded.signatures.items():
      report["signatures"][str(i)][sig] = _describe(fn)
      feed = {k: tf.constant(requests[k]) for k in _input_specs(fn)}
      for key, value in fn(**feed).items():
        outputs[f"{i}/{sig}/{key}"] = value.numpy()
    if i == 0:
      report["errors"] = _bad_requests(loaded, requests)
      report["extra"] = _extra_requests(loaded, requests, outputs)
      outputs.update(_session_outputs(directory, requests))
  report["vib_flows_import_error"] = IMPORT_ERROR
  report["vib_flows_loaded"] = any(m.startswith("vib_flows")
                                   for m in sys.modules)
  report["keras_loaded"] = "keras" in sys.modules
  report["tensorflow_version"] = tf.__version__
  np.savez(out_prefix + ".npz", **outputs)
  with open(out_prefix + ".json", "w") as f:
    json.dump(report, f, indent=1)
  print("loaded", len(dirs), "SavedModels")


if __name__ == "__main__":
  main(sys.argv)
