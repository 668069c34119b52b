"""SavedModel export for TensorFlow Serving, bad requests and NaN included.

One exported model per kind (module-scoped; the VAE exported twice), and a
Bernoulli VAE on binary digits, each loaded once in a separate Python process
that cannot import vib_flows (tests/scripts/load_saved_model.py), whose
outputs and error messages the tests check. The requests the signatures must
refuse, and their messages, are tests/serving_requests.py's (shared with the
C API's test).
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tests import serving_requests
from vib_flows import data as data_lib
from vib_flows.app import export
from vib_flows.app import model_builder

LOADER = os.path.join(helpers.ROOT, "tests", "scripts", "load_saved_model.py")
PYTHON_ONLY_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}
STATEFUL_RANDOM_OPS = {
    "RandomStandardNormal", "RandomUniform", "RandomUniformInt",
    "TruncatedNormal", "RandomGamma", "RandomPoisson", "RandomPoissonV2",
    "Multinomial", "RandomShuffle", "StatefulStandardNormalV2",
    "StatefulUniform", "StatefulUniformInt", "StatefulUniformFullInt",
    "StatefulTruncatedNormal", "RngSkip", "RngReadAndSkip",
}
SIGNATURES = {
    "vae": {"serving_default": {"x"}, "encode": {"x"}, "decode": {"z"},
            "log_likelihood": {"x"}},
    "vib": {"serving_default": {"x"}, "classify": {"x"}, "encode": {"x"}},
}
OUTPUTS = {"encode": {"z_mean", "z_stddev", "z"}, "decode": {"x_mean"},
           "log_likelihood": {"elbo", "log_likelihood"},
           "classify": {"probabilities", "class_ids"}}
# export.max_log_likelihood_rows of the test exports: the good request's rows.
MAX_ROWS = 7
# Export -> config.model.kind; "bernoulli" is a VAE on binary digits.
KINDS = {"vae": "vae", "vib": "vib", "bernoulli": "vae"}


def _build(kind):
  config = helpers.config("test")
  config.model.kind = KINDS[kind]
  if kind == "bernoulli":
    config.model.likelihood = "bernoulli"  # data.preprocess "auto": static.
  config.export.max_log_likelihood_rows = MAX_ROWS
  splits = data_lib.load(config)
  model = model_builder.build_model(config, splits.info)
  x, y = splits.train.x[:2], splits.train.y[:2]
  model.per_example_loss({"x": x, "y": y}, tf.constant(1.0),
                         tf.constant([0, 0], tf.int32))
  return config, splits, model


@pytest.fixture(scope="module")
def served(tmp_path_factory):
  """The exports (the VAE twice) run in a vib_flows-free process.

  Each export also gets the requests of tests/serving_requests.py
  (`refusals` and `answered`), as "extra" requests of the loader.
  """
  root = tmp_path_factory.mktemp("export")
  result = {}
  dirs = []
  for kind in KINDS:
    config, splits, model = _build(kind)
    base = str(root / kind)
    paths = [export.export_model(model, config, splits.info, base_dir=base)]
    if kind == "vae":
      paths.append(
          export.export_model(model, config, splits.info, base_dir=base))
    x = splits.test.x[:MAX_ROWS]
    z = np.random.default_rng(0).normal(size=(5, config.model.latent_dim))
    requests = {"x": x, "z": z.astype(np.float32)}
    extra = {**serving_requests.refusals(kind, x, requests["z"], MAX_ROWS),
             **serving_requests.answered(kind, x, MAX_ROWS)}
    np.savez(root / f"{kind}_requests.npz", **requests, **{
        f"extra/{sig}/{name}/{case}": value
        for case, (sig, name, value, *_) in extra.items()})
    result[kind] = dict(config=config, info=splits.info, model=model,
                        base=base, paths=paths, requests=requests)
    dirs.append(paths)
  for kind, paths in zip(KINDS, dirs):
    out = str(root / f"{kind}_out")
    child = helpers.env()
    child.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-I", LOADER, str(root / f"{kind}_requests.npz"),
         out, *paths],
        cwd=str(root), env=child, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result[kind]["outputs"] = dict(np.load(out + ".npz"))
    with open(out + ".json") as f:
      result[kind]["report"] = json.load(f)
  return result


def _in_process(entry, signature):
  """The model's own outputs for the test request, with the signature's seed."""
  model, config, requests = entry["model"], entry["config"], entry["requests"]
  x = tf.constant(requests["x"])
  seed = export.request_seed(x)
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


# ------------------------------------------------------------------ loading
@pytest.mark.parametrize("kind", ["vae", "vib"])
def test_loads_without_vib_flows_and_every_signature_runs(served, kind):
  report = served[kind]["report"]
  assert "No module named 'vib_flows'" in report["vib_flows_import_error"]
  assert not report["vib_flows_loaded"]
  sigs = report["signatures"]["0"]
  assert set(sigs) == set(SIGNATURES[kind])
  n = served[kind]["requests"]["x"].shape[0]
  for name, spec in sigs.items():
    assert set(spec["inputs"]) == SIGNATURES[kind][name]
    for dtype, shape in spec["inputs"].values():
      assert dtype == "float32" and shape[0] is None
    base = "encode" if name == "serving_default" and kind == "vae" else (
        "classify" if name == "serving_default" else name)
    assert set(spec["outputs"]) == OUTPUTS[base]
    for out in spec["outputs"]:
      value = served[kind]["outputs"][f"0/{name}/{out}"]
      rows = served[kind]["requests"]["z"].shape[0] if name == "decode" else n
      assert value.shape[0] == rows and np.all(np.isfinite(value))


@pytest.mark.parametrize("kind", ["vae", "vib"])
def test_outputs_equal_the_in_process_model(served, kind):
  entry = served[kind]
  deterministic = {"z_mean", "z_stddev", "x_mean"}
  for name in SIGNATURES[kind]:
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

  tests/test_serving_c.py runs the exports in TensorFlow's C loader itself.
  """
  outputs = served[kind]["outputs"]
  session = {k: v for k, v in outputs.items() if k.startswith("session/")}
  assert {k.split("/")[1] for k in session} == set(SIGNATURES[kind])
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


@pytest.mark.parametrize("kind", list(KINDS))
def test_graph_holds_no_python_only_or_stateful_random_ops(served, kind):
  ops = _all_ops(served[kind]["paths"][0])
  assert "Fingerprint" in ops and "StatefulPartitionedCall" in ops
  assert {"Assert", "CheckNumerics"} <= ops  # The input checks run in C++.
  assert not ops & PYTHON_ONLY_OPS, ops & PYTHON_ONLY_OPS
  assert not ops & STATEFUL_RANDOM_OPS, ops & STATEFUL_RANDOM_OPS


# ------------------------------------------------------------ bad requests
def _function(kind, sig):
  """The name the messages give: serving_default is encode or classify."""
  if sig != "serving_default":
    return sig
  return "classify" if kind == "vib" else "encode"


@pytest.mark.parametrize("kind", ["vae", "vib"])
def test_wrong_shape_or_dtype_is_refused_naming_the_input(served, kind):
  errors = served[kind]["report"]["errors"]
  assert set(errors) == set(SIGNATURES[kind])
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


@pytest.mark.parametrize("kind", list(KINDS))
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
    for out in OUTPUTS[_function(kind, sig)]:
      got = entry["outputs"][f"extra/{case}/{out}"]
      assert got.shape[0] == value.shape[0] and np.all(np.isfinite(got))


def test_metadata_records_the_input_checks(served):
  expected = {"vae": ([0.0, 16.0], "integer", MAX_ROWS),
              "vib": ([0.0, 1.0], None, None),
              "bernoulli": ([0.0, 1.0], "binary", MAX_ROWS)}
  for kind, (x_range, support, rows) in expected.items():
    path = os.path.join(served[kind]["paths"][0], "assets.extra",
                        export.METADATA_FILE)
    with open(path) as f:
      meta = json.load(f)
    assert meta["input_checks"] == {
        "x_range": x_range, "log_likelihood_support": support,
        "max_log_likelihood_rows": rows}, kind
    assert meta["config"]["export"]["max_log_likelihood_rows"] == MAX_ROWS


def test_non_finite_output_is_refused(served):
  """An answer that overflows is refused, not returned as NaN."""
  entry = served["vae"]
  module = export.make_serving_module(entry["model"], entry["config"],
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
    export.make_serving_module(entry["model"], config, entry["info"])


# ------------------------------------------------------------ versions
def test_exporting_twice_gives_two_loadable_versions(served):
  entry = served["vae"]
  assert [os.path.basename(p) for p in entry["paths"]] == ["1", "2"]
  assert all(os.path.dirname(p) == os.path.join(entry["base"], "vae_digits")
             for p in entry["paths"])
  assert set(entry["report"]["signatures"]) == {"0", "1"}
  for key in entry["outputs"]:
    if key.startswith("0/"):
      np.testing.assert_array_equal(entry["outputs"][key],
                                    entry["outputs"]["1/" + key[2:]])


@pytest.mark.parametrize("where", ["saved_model.save", "warm-up"])
def test_interrupted_export_leaves_no_version_dir(served, monkeypatch, where):
  entry = served["vae"]
  model_dir = os.path.join(entry["base"], "vae_digits")
  before = sorted(os.listdir(model_dir))
  if where == "saved_model.save":
    real_save = tf.saved_model.save

    def failing_save(obj, path, *args, **kwargs):
      real_save(obj, path, *args, **kwargs)  # Files are on disk, then...
      assert os.listdir(path)
      raise RuntimeError("simulated crash inside the write")

    monkeypatch.setattr(tf.saved_model, "save", failing_save)
  else:
    def failing_warmup(*args, **kwargs):
      raise RuntimeError("simulated crash inside the write")

    monkeypatch.setattr(export, "_write_warmup", failing_warmup)
  with pytest.raises(RuntimeError, match="simulated crash"):
    export.export_model(entry["model"], entry["config"], entry["info"],
                        base_dir=entry["base"])
  assert sorted(os.listdir(model_dir)) == before  # No version, no temp dir.
  assert export.existing_versions(model_dir) == [1, 2]


def test_next_export_removes_temp_dirs_of_killed_exports(tmp_path):
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True)
  dead_pid = int(dead.stdout)
  # Names as export_model makes them: one of a process killed mid-export,
  # one of a live export (this process), one of another machine.
  stale = tempfile.mkdtemp(prefix=export._tmp_prefix(dead_pid), dir=tmp_path)  # pylint: disable=protected-access
  live = tempfile.mkdtemp(prefix=export._tmp_prefix(), dir=tmp_path)  # pylint: disable=protected-access
  other = tmp_path / f".tmp-export-otherhost-{dead_pid}-abc123"
  other.mkdir()
  (tmp_path / "1").mkdir()
  with open(os.path.join(stale, "saved_model.pb"), "w") as f:
    f.write("half-written")
  assert export.remove_stale_exports(str(tmp_path)) == [stale]
  assert sorted(os.listdir(tmp_path)) == sorted(
      ["1", os.path.basename(live), other.name])


# ------------------------------------------------------------ warm-up
@pytest.mark.parametrize("kind", ["vae", "vib"])
def test_warmup_records_parse_and_match_the_signatures(served, kind):
  from tensorflow_serving.apis import prediction_log_pb2  # pylint: disable=g-import-not-at-top
  path = served[kind]["paths"][0]
  records = os.path.join(path, "assets.extra", export.WARMUP_FILE)
  logs = []
  for raw in tf.data.TFRecordDataset(records):
    log = prediction_log_pb2.PredictionLog()
    log.ParseFromString(raw.numpy())
    logs.append(log)
  loaded = tf.saved_model.load(path)
  by_signature = {log.predict_log.request.model_spec.signature_name: log
                  for log in logs}
  assert set(by_signature) == set(SIGNATURES[kind]) == set(loaded.signatures)
  for name, log in by_signature.items():
    request = log.predict_log.request
    assert request.model_spec.name == f"{kind}_digits"
    fn = loaded.signatures[name]
    specs = fn.structured_input_signature[1]
    assert set(request.inputs) == set(specs)
    feed = {}
    for key, proto in request.inputs.items():
      value = tf.make_ndarray(proto)
      assert value.dtype == np.float32
      assert list(value.shape[1:]) == specs[key].shape.as_list()[1:]
      feed[key] = tf.constant(value)
    assert set(fn(**feed)) == set(fn.structured_outputs)  # The request runs.


def test_missing_serving_api_is_a_clear_error(served, monkeypatch, tmp_path):
  entry = served["vib"]
  monkeypatch.setitem(sys.modules, "tensorflow_serving.apis", None)
  with pytest.raises(ImportError, match="tensorflow-serving-api"):
    export.export_model(entry["model"], entry["config"], entry["info"],
                        base_dir=str(tmp_path))
  assert not os.listdir(tmp_path)  # Nothing written.
  config = helpers.config("test")
  config.model.kind = "vib"
  config.export.warmup_requests = False
  path = export.export_model(entry["model"], config, entry["info"],
                             base_dir=str(tmp_path))
  assert os.path.basename(path) == "1"
  assert not os.path.exists(
      os.path.join(path, "assets.extra", export.WARMUP_FILE))


# ------------------------------------------------------------ refusals, names
def test_nan_weights_are_refused(served, tmp_path):
  entry = served["vib"]
  weight = entry["model"].encoder.trainable_weights[0]
  good = weight.numpy()
  bad = good.copy()
  bad[0, 0] = np.nan
  weight.assign(bad)
  try:
    with pytest.raises(export.NonFiniteWeightsError,
                       match=r"non-finite.*encoder.*\(1 of"):
      export.export_model(entry["model"], entry["config"], entry["info"],
                          base_dir=str(tmp_path))
  finally:
    weight.assign(good)
  assert not os.listdir(tmp_path)


def test_model_names():
  config = helpers.config("test")
  assert export.model_name(config) == "vae_digits"
  config.data.name = "npz:/data/my set.npz"
  config.model.kind = "vib"
  assert export.model_name(config) == "vib_npz_my_set"
  config.data.name = "mnist:3.0.1"
  assert export.model_name(config) == "vib_mnist_3.0.1"
  config.export.model_name = "served"
  assert export.model_name(config) == "served"
  config.export.model_name = "../elsewhere"
  with pytest.raises(ValueError, match="plain directory name"):
    export.model_name(config)
