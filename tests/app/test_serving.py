"""The served signatures (`vib_flows.app.serving`): outputs and refusals.

The `served` exports (tests/app/conftest.py) loaded in a Python process that
cannot import vib_flows: every signature runs and gives the in-process
model's outputs, also as TensorFlow Serving loads it (a TF1 session), with
the sampling seed taken from the request; the graph holds no Python-only or
stateful random op. Bad requests (tests/serving_requests.py) are refused
naming the function and the input, requests at the edge are answered, and a
non-finite answer is refused.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tests import serving_requests
from vib_flows.app import serving

MAX_ROWS = serving_requests.MAX_ROWS


PYTHON_ONLY_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}


STATEFUL_RANDOM_OPS = {
    "RandomStandardNormal", "RandomUniform", "RandomUniformInt",
    "TruncatedNormal", "RandomGamma", "RandomPoisson", "RandomPoissonV2",
    "Multinomial", "RandomShuffle", "StatefulStandardNormalV2",
    "StatefulUniform", "StatefulUniformInt", "StatefulUniformFullInt",
    "StatefulTruncatedNormal", "RngSkip", "RngReadAndSkip",
}


def _in_process(entry, signature):
  """The model's own outputs for the test request, with the signature's seed."""
  model, config, requests = entry["model"], entry["config"], entry["requests"]
  x = tf.constant(requests["x"])
  seed = serving.request_seed(x)
  if signature in ("encode", "serving_default") and (
      signature == "encode" or config.model.kind == "vae"):
    return {k: v.numpy() for k, v in model.encode(x, seed).items()}
  if signature == "decode":
    return {"x_mean": model.decode(tf.constant(requests["z"])).numpy()}
  if signature == "log_likelihood":
    k = config.export.num_importance_samples
    elbo, ll = model.log_likelihood(
        x, k, seed, chunk_size=min(config.eval.importance_chunk_size, k))
    return {"elbo": elbo.numpy(), "log_likelihood": ll.numpy()}
  probs = model.predict_proba(x, config.eval.vib_num_samples, seed).numpy()
  return {"probabilities": probs, "class_ids": probs.argmax(-1)}


@pytest.mark.parametrize("kind", ["vae", "vib"])
def test_loads_without_vib_flows_and_every_signature_runs(served, kind):
  report = served[kind]["report"]
  assert "No module named 'vib_flows'" in report["vib_flows_import_error"]
  assert not report["vib_flows_loaded"]
  sigs = report["signatures"]["0"]
  assert set(sigs) == set(serving_requests.SIGNATURES[kind])
  n = served[kind]["requests"]["x"].shape[0]
  for name, spec in sigs.items():
    assert set(spec["inputs"]) == serving_requests.SIGNATURES[kind][name]
    for dtype, shape in spec["inputs"].values():
      assert dtype == "float32" and shape[0] is None
    base = "encode" if name == "serving_default" and kind == "vae" else (
        "classify" if name == "serving_default" else name)
    assert set(spec["outputs"]) == serving_requests.OUTPUTS[base]
    for out in spec["outputs"]:
      value = served[kind]["outputs"][f"0/{name}/{out}"]
      rows = served[kind]["requests"]["z"].shape[0] if name == "decode" else n
      assert value.shape[0] == rows and np.all(np.isfinite(value))


@pytest.mark.parametrize("kind", ["vae", "vib"])
def test_outputs_equal_the_in_process_model(served, kind):
  entry = served[kind]
  deterministic = {"z_mean", "z_stddev", "x_mean"}
  for name in serving_requests.SIGNATURES[kind]:
    expected = _in_process(entry, name)
    for out, want in expected.items():
      got = entry["outputs"][f"0/{name}/{out}"]
      if out in deterministic or out == "class_ids":
        np.testing.assert_array_equal(got, want, err_msg=f"{name}/{out}")
      else:  # Sampled with the same seed: equal up to float reassociation.
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5,
                                   err_msg=f"{name}/{out}")
  if kind == "vae":
    ll = entry["outputs"]["0/log_likelihood/log_likelihood"]
    elbo = entry["outputs"]["0/log_likelihood/elbo"]
    assert np.all(ll >= elbo - 1e-4)
  else:
    probs = entry["outputs"]["0/classify/probabilities"]
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("kind", ["vae", "vib"])
def test_runs_like_tensorflow_serving_loads_it(served, kind):
  """TF1 session + saver_def restore + SignatureDef names (the C++ path).

  tests/app/test_serving_c.py runs the exports in TensorFlow's C loader.
  """
  outputs = served[kind]["outputs"]
  session = {k: v for k, v in outputs.items() if k.startswith("session/")}
  assert {k.split("/")[1] for k in session} == set(
      serving_requests.SIGNATURES[kind])
  for key, value in session.items():
    np.testing.assert_allclose(value, outputs["0/" + key[len("session/"):]],
                               rtol=1e-5, atol=1e-5, err_msg=key)


def test_sampling_seed_comes_from_the_request(served):
  loaded = tf.saved_model.load(served["vae"]["paths"][0])
  x = tf.constant(served["vae"]["requests"]["x"])
  first = loaded.signatures["encode"](x=x)["z"].numpy()
  again = loaded.signatures["encode"](x=x)["z"].numpy()
  other = loaded.signatures["encode"](x=x[:3])["z"].numpy()
  np.testing.assert_array_equal(first, again)  # Same request, same sample.
  assert not np.allclose(first[:3], other)  # Another request, another seed.
  np.testing.assert_array_equal(
      first, served["vae"]["outputs"]["0/encode/z"])  # Same across processes.


def _all_ops(saved_model_dir):
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
  proto = saved_model_pb2.SavedModel()
  with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
    proto.ParseFromString(f.read())
  ops = set()
  for meta_graph in proto.meta_graphs:
    ops.update(node.op for node in meta_graph.graph_def.node)
    for function in meta_graph.graph_def.library.function:
      ops.update(node.op for node in function.node_def)
  return ops


@pytest.mark.parametrize("kind", list(serving_requests.KINDS))
def test_graph_holds_no_python_only_or_stateful_random_ops(served, kind):
  ops = _all_ops(served[kind]["paths"][0])
  assert "Fingerprint" in ops and "StatefulPartitionedCall" in ops
  assert {"Assert", "CheckNumerics"} <= ops  # The input checks run in C++.
  assert not ops & PYTHON_ONLY_OPS, ops & PYTHON_ONLY_OPS
  assert not ops & STATEFUL_RANDOM_OPS, ops & STATEFUL_RANDOM_OPS


def _function(kind, sig):
  """The name the messages give: serving_default is encode or classify."""
  if sig != "serving_default":
    return sig
  return "classify" if kind == "vib" else "encode"


@pytest.mark.parametrize("kind", ["vae", "vib"])
def test_wrong_shape_or_dtype_is_refused_naming_the_input(served, kind):
  errors = served[kind]["report"]["errors"]
  assert set(errors) == set(serving_requests.SIGNATURES[kind])
  for sig, by_input in errors.items():
    for name, cases in by_input.items():
      rows, width = served[kind]["requests"][name].shape
      got = {"width": f"{rows}, {width + 1}", "rank": f"{rows}",
             "rank3": f"{rows}, {width}, 1"}
      for case, shape in got.items():  # In-graph check: also in C++ serving.
        err = cases[case]
        assert err is not None, (sig, name, case)
        assert err["type"] == "InvalidArgumentError", err
        assert (f"{_function(kind, sig)}: {name} must have shape [batch, "
                f"{width}] (one example is [{width}]); got [{shape}]"
                in err["message"]), err
      # Wrong dtype: the signature refuses it before running (TF names the
      # position, "input #0", and both dtypes) ...
      err = cases["dtype"]
      assert err is not None and "InvalidArgument" in err["type"], err
      assert "float" in err["message"] and "int32" in err["message"]
      # ... and the restored tf.function names the input.
      if sig != "serving_default":
        for case in ("function_dtype", "function_width", "function_rank",
                     "function_rank3"):
          err = cases[case]
          assert err is not None and f"name='{name}'" in err["message"], err


@pytest.mark.parametrize("kind", list(serving_requests.KINDS))
def test_the_contract_refuses_bad_requests_and_answers_edge_ones(
    served, kind):
  """Wrong shapes, NaN/Inf, values out of range or support, too many rows.

  Each is an InvalidArgument whose message names the function and the input
  (tests/serving_requests.py lists them; the C API's test sends the same).
  Requests at the edge (the range's ends, exactly the most rows, grey x to
  a Bernoulli model's encoder) are answered.
  """
  entry = served[kind]
  x, z = entry["requests"]["x"], entry["requests"]["z"]
  errors = entry["report"]["extra"]
  for case, (sig, name, _, message) in serving_requests.refusals(
      kind, x, z, MAX_ROWS).items():
    err = errors[case]
    assert err is not None, f"{kind} {sig} answered the bad request {case}"
    assert err["type"] == "InvalidArgumentError", (case, err)
    assert message in err["message"], (case, message, err["message"])
    assert name in message and _function(kind, sig) in message
  for case, (sig, _, value) in serving_requests.answered(
      kind, x, MAX_ROWS).items():
    assert errors[case] is None, (case, errors[case])
    for out in serving_requests.OUTPUTS[_function(kind, sig)]:
      got = entry["outputs"][f"extra/{case}/{out}"]
      assert got.shape[0] == value.shape[0] and np.all(np.isfinite(got))


def test_non_finite_output_is_refused(served):
  """An answer that overflows is refused, not returned as NaN."""
  entry = served["vae"]
  module = serving.make_serving_module(entry["model"], entry["config"],
                                      entry["info"])
  weight = entry["model"].decoder.trainable_weights[0]
  good = weight.numpy()
  weight.assign(np.full_like(good, 3e38))
  try:
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="decode: output x_mean is not finite"):
      module.decode(tf.constant(entry["requests"]["z"]))
  finally:
    weight.assign(good)
  assert np.all(np.isfinite(
      module.decode(tf.constant(entry["requests"]["z"]))["x_mean"]))


def test_row_limit_must_be_positive(served):
  entry = served["vae"]
  config = helpers.config("test")
  config.export.max_log_likelihood_rows = 0
  with pytest.raises(ValueError, match="max_log_likelihood_rows must be >= 1"):
    serving.make_serving_module(entry["model"], config, entry["info"])
