"""SavedModel export (`vib_flows.app.export`): versions, files, refusals.

The `served` exports (tests/app/conftest.py): metadata that records the
input checks, versions 1 and 2 of one model, no version directory left by an
interrupted export (and the next export removes a killed one's), warm-up
records that parse and match the signatures, a clear error without the
serving API, NaN weights refused, and the model names. What the signatures
answer is tests/app/test_serving.py's.
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
from vib_flows.app import export

MAX_ROWS = serving_requests.MAX_ROWS


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
  assert set(by_signature) == set(serving_requests.SIGNATURES[kind]) == set(
      loaded.signatures)
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
