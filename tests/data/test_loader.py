"""Loading the data (`vib_flows.data`): sources, representations, validation.

The references are independent of the package: the digits split is written out
from `sklearn.datasets.load_digits` here, the representations from their
definitions, and the TFDS path builds the local "vib_flows_digits" builder for
real in a temporary data_dir (no mocking of tfds.load).
"""

import time

import numpy as np
import pytest
from sklearn import datasets

from tests import helpers
from vib_flows import data
from vib_flows.app import faults


@pytest.fixture(scope="module")
def sklearn_digits():
  x, y = datasets.load_digits(return_X_y=True)
  return x, y


def write_npz(tmp_path, name="data.npz", **arrays):
  path = tmp_path / name
  np.savez(path, **arrays)
  return f"npz:{path}"


def good_arrays(seed=0, n_train=40, n_test=12, shape=(4, 4), levels=256):
  """Small uint8 images with labels 0..2 (a valid npz payload)."""
  rng = np.random.default_rng(seed)
  return {
      "x_train": rng.integers(0, levels, (n_train,) + shape).astype(np.uint8),
      "y_train": np.arange(n_train) % 3,
      "x_test": rng.integers(0, levels, (n_test,) + shape).astype(np.uint8),
      "y_test": np.arange(n_test) % 3,
  }


# ------------------------------------------------------------------ digits


def test_digits_book_split_sizes_and_order(sklearn_digits):
  x, y = sklearn_digits
  splits = data.load(helpers.config("default"))
  assert splits.train.x.shape == (1000, 64)
  assert splits.validation.x.shape == (350, 64)
  assert splits.test.x.shape == (447, 64)
  for split, rows in ((splits.train, slice(0, 1000)),
                      (splits.validation, slice(1000, 1350)),
                      (splits.test, slice(1350, 1797))):
    assert split.x.dtype == np.float32 and split.y.dtype == np.int64
    np.testing.assert_array_equal(split.x, x[rows])
    np.testing.assert_array_equal(split.y, y[rows])
  assert splits.info == data.DataInfo(
      name="digits", input_shape=(64,), num_classes=10, num_levels=17,
      preprocess="levels")


@pytest.mark.parametrize("likelihood,preprocess,expected", [
    ("categorical", "auto", lambda v: v),
    ("bernoulli", "threshold", lambda v: (v / 16 > 0.5).astype(float)),
    ("gaussian", "auto", lambda v: v / 16),
    ("bernoulli", "dynamic", lambda v: v / 16),  # The training split.
    ("bernoulli", "scale", lambda v: v / 16),
])
def test_digits_representation_per_likelihood(
    sklearn_digits, likelihood, preprocess, expected):
  x, _ = sklearn_digits
  splits = data.load(helpers.config("default", **{
      "model.likelihood": likelihood, "data.preprocess": preprocess}))
  want_preprocess = {"categorical": "levels", "bernoulli": "static",
                     "gaussian": "scale"}[likelihood]
  if preprocess != "auto":
    want_preprocess = preprocess
  assert splits.info.preprocess == want_preprocess
  assert splits.info.num_levels == (17 if want_preprocess == "levels" else None)
  np.testing.assert_allclose(splits.train.x, expected(x[:1000]), rtol=1e-6)
  if preprocess != "dynamic":
    np.testing.assert_allclose(splits.test.x, expected(x[1350:]), rtol=1e-6)


def test_bernoulli_auto_is_a_fixed_draw_of_the_grey_values(sklearn_digits):
  x, _ = sklearn_digits
  splits = data.load(
      helpers.config("default", **{"model.likelihood": "bernoulli"}))
  assert splits.info.preprocess == "static"
  grey = x[1350:] / 16
  test = splits.test.x
  assert set(np.unique(test)) == {0.0, 1.0}
  # Bernoulli(0) is 0 and Bernoulli(1) is 1; a grey value of 1/2 is a coin
  # flip (about 2000 such pixels: within 0.1 of 1/2 by over 8 sd).
  assert not test[grey == 0].any() and test[grey == 1].all()
  assert abs(test[grey == 0.5].mean() - 0.5) < 0.1


def test_vib_auto_scales_inputs_to_unit_interval(sklearn_digits):
  x, _ = sklearn_digits
  splits = data.load(helpers.config("default", **{"model.kind": "vib"}))
  assert splits.info.preprocess == "scale"
  np.testing.assert_allclose(splits.train.x, x[:1000] / 16, rtol=1e-6)


def test_levels_requantized_when_num_levels_differs(sklearn_digits):
  x, _ = sklearn_digits
  fewer = data.load(helpers.config("default", **{"model.num_levels": 4}))
  assert fewer.info.num_levels == 4
  np.testing.assert_array_equal(fewer.train.x, np.floor(x[:1000] * 4 / 17))
  more = data.load(helpers.config("default", **{"model.num_levels": 256}))
  np.testing.assert_array_equal(more.train.x, np.rint(x[:1000] * 255 / 16))
  assert more.train.x.max() == 255


# --------------------------------------------------------------------- npz


def test_npz_round_trip_and_validation_split(tmp_path):
  arrays = good_arrays()
  name = write_npz(tmp_path, **arrays)
  config = helpers.config("default",
                          **{"data.name": name, "model.num_levels": 0})
  splits = data.load(config)
  assert splits.info.input_shape == (4, 4)
  assert splits.info.num_levels == 256 and splits.info.num_classes == 3
  np.testing.assert_array_equal(splits.train.x, arrays["x_train"])
  np.testing.assert_array_equal(splits.test.y, arrays["y_test"])
  assert splits.validation is splits.test  # validation_size = 0.

  config.data.validation_size = 10
  config.model.likelihood = "gaussian"
  splits = data.load(config)
  np.testing.assert_allclose(splits.train.x, arrays["x_train"][:30] / 255)
  np.testing.assert_allclose(splits.validation.x, arrays["x_train"][30:] / 255)
  np.testing.assert_array_equal(splits.validation.y, arrays["y_train"][30:])

  given = dict(arrays, x_validation=arrays["x_test"][:5],
               y_validation=arrays["y_test"][:5])
  config.data.name = write_npz(tmp_path, "with_val.npz", **given)
  splits = data.load(config)
  assert splits.train.num_examples == 40 and splits.validation.num_examples == 5


def test_npz_float_data_and_no_labels_for_vae(tmp_path):
  rng = np.random.default_rng(1)
  x_train = rng.uniform(size=(20, 6)).astype(np.float32)
  x_test = rng.uniform(size=(7, 6)).astype(np.float32)
  name = write_npz(tmp_path, x_train=x_train, x_test=x_test)
  splits = data.load(helpers.config("default", **{
      "data.name": name, "model.likelihood": "bernoulli",
      "data.preprocess": "threshold"}))
  assert splits.train.y is None and splits.info.num_classes is None
  np.testing.assert_array_equal(splits.train.x, x_train > 0.5)


# ---------------------------------------------------------- bad input cases


def _mutate(**changes):
  """A case: good npz arrays with `changes` (None deletes a key)."""
  def build():
    arrays = good_arrays()
    for key, value in changes.items():
      if value is None:
        arrays.pop(key)
      else:
        arrays[key] = value(arrays) if callable(value) else value
    return arrays
  return build


def _float_x(values):
  return lambda a: np.full((40, 4, 4), values, np.float32)


BAD_NPZ = [
    ("missing_key", _mutate(x_test=None), {}, r"missing key\(s\) x_test"),
    ("x_rank", _mutate(x_train=np.zeros(40, np.uint8)), {},
     r"x_train has the wrong rank.*rank 1"),
    ("x_rank_high", _mutate(x_train=np.zeros((40, 2, 2, 2, 2), np.uint8)), {},
     r"x_train has the wrong rank.*rank 5"),
    ("shape_mismatch", _mutate(x_test=np.zeros((12, 5, 4), np.uint8)), {},
     r"x_test has the wrong shape.*\(5, 4\).*expected \(4, 4\)"),
    ("y_not_1d", _mutate(y_train=np.zeros((40, 1), np.int64)), {},
     r"y_train must be 1-D"),
    ("y_length", _mutate(y_test=np.zeros(11, np.int64)), {},
     r"y_test has length 11 but its x has 12 examples"),
    ("y_non_integer", _mutate(y_train=np.full(40, 0.5)), {},
     r"y_train has non-integer label"),
    ("y_negative", _mutate(y_train=lambda a: a["y_train"] - 1), {},
     r"y_train has negative label"),
    ("y_test_unknown_class", _mutate(y_test=np.full(12, 7)), {},
     r"y_test\[0\] = 7 is outside the classes 0\.\.2 \(inferred as the "
     r"largest training label \+ 1\)"),
    ("empty_test", _mutate(x_test=np.zeros((0, 4, 4), np.uint8),
                           y_test=np.zeros(0, np.int64)), {},
     r"x_test is empty"),
    ("nan", _mutate(x_train=_float_x(np.nan),
                    x_test=np.zeros((12, 4, 4), np.float32)),
     {"model.likelihood": "gaussian"},
     r"x_train has 640 NaN value"),
    ("inf", _mutate(x_test=np.full((12, 4, 4), np.inf, np.float32),
                    x_train=_float_x(0.5)),
     {"model.likelihood": "gaussian"}, r"x_test has 192 infinite value"),
    ("bernoulli_support", _mutate(x_train=_float_x(1.5),
                                  x_test=np.zeros((12, 4, 4), np.float32)),
     {"model.likelihood": "bernoulli"}, r"x_train has values outside \[0, 1\]"),
    ("bernoulli_support_dynamic", _mutate(
        x_train=_float_x(-0.25), x_test=np.zeros((12, 4, 4), np.float32)),
     {"model.likelihood": "bernoulli", "data.preprocess": "dynamic"},
     r"x_train has values outside \[0, 1\]"),
    ("categorical_non_integer", _mutate(
        x_train=_float_x(0.5), x_test=np.zeros((12, 4, 4), np.float32)),
     {"model.likelihood": "categorical", "model.num_levels": 17},
     r"x_train has non-integer values.*categorical"),
    ("categorical_out_of_range", _mutate(
        x_train=np.zeros((40, 4, 4), np.float32),
        x_test=np.full((12, 4, 4), 17, np.float32)),
     {"model.likelihood": "categorical", "model.num_levels": 17},
     r"x_test has values outside 0\.\.16.*categorical"),
    ("integer_levels_out_of_range", _mutate(
        x_train=np.full((40, 4, 4), 20, np.int32),
        x_test=np.zeros((12, 4, 4), np.int32)),
     {"model.num_levels": 17}, r"x_train has values outside 0\.\.16"),
    ("vib_without_labels", _mutate(y_test=None), {"model.kind": "vib"},
     r"model.kind='vib' needs labels.*test split"),
    ("y_validation_alone", _mutate(y_validation=np.zeros(3, np.int64)), {},
     r"y_validation but no x_validation"),
    ("mixed_dtypes", _mutate(x_test=np.zeros((12, 4, 4), np.float32)), {},
     r"x arrays mix integer and float dtypes"),
    ("non_numeric", _mutate(x_train=np.full((40, 4, 4), "a")), {},
     r"x_train must be a numeric array"),
    ("validation_size", _mutate(), {"data.validation_size": 40},
     r"data.validation_size=40 leaves no training examples"),
    ("unknown_preprocess", _mutate(), {"data.preprocess": "binarize"},
     r"Unknown data.preprocess 'binarize'; valid values: auto, levels"),
    ("unknown_likelihood", _mutate(), {"model.likelihood": "poisson"},
     r"Unknown model.likelihood 'poisson'; "
     r"valid values: bernoulli, categorical, gaussian"),
    ("categorical_needs_levels", _mutate(),
     {"model.likelihood": "categorical", "data.preprocess": "scale"},
     r"categorical.*needs integer levels"),
]


@pytest.mark.parametrize("build,overrides,match",
                         [c[1:] for c in BAD_NPZ], ids=[c[0] for c in BAD_NPZ])
def test_bad_npz_input_is_refused_with_a_clear_message(
    tmp_path, build, overrides, match):
  name = write_npz(tmp_path, **build())
  config = helpers.config("default", **{"data.name": name,
                                        "model.num_levels": 0, **overrides})
  with pytest.raises(ValueError, match=match):
    data.load(config)


def test_npz_file_missing_or_unreadable(tmp_path):
  config = helpers.config("default",
                          **{"data.name": f"npz:{tmp_path / 'nope.npz'}"})
  with pytest.raises(ValueError, match=r"npz file not found: .*nope\.npz"):
    data.load(config)
  garbage = tmp_path / "garbage.npz"
  garbage.write_bytes(b"this is not a zip archive")
  config.data.name = f"npz:{garbage}"
  with pytest.raises(faults.DataError, match=r"npz file .*garbage\.npz' is "
                     r"not a valid \.npz/\.zip archive"):
    data.load(config)
  single = tmp_path / "single.npy"
  np.save(single, np.zeros(3))
  config.data.name = f"npz:{single}"
  with pytest.raises(faults.DataError,
                     match=r"is a single \.npy array, not an \.npz archive"):
    data.load(config)


def test_labels_are_checked_against_the_class_count(tmp_path, caplog):
  arrays = good_arrays()  # Labels 0..2.
  arrays["y_train"][5] = 6  # Classes 3..5 would have no training example.
  name = write_npz(tmp_path, **arrays)
  config = helpers.config("default", **{"data.name": name,
                                        "model.num_levels": 0,
                                        "model.kind": "vib"})
  with pytest.raises(faults.DataError,
                     match=r"y_train\[5\] = 6 makes 7 classes \(the largest "
                     r"label \+ 1\), but 3 of them \(3\.\.5\) have no "
                     r"training example: .*data\.num_classes=7"):
    data.load(config)
  config.data.num_classes = 7  # Empty classes on purpose.
  assert data.load(config).info.num_classes == 7
  config.data.num_classes = 5
  with pytest.raises(faults.DataError,
                     match=r"y_train\[5\] = 6 is outside the classes 0\.\.4 "
                     r"\(data\.num_classes=5\)"):
    data.load(config)
  # A VAE does not use the labels: the inferred count is only warned about.
  config.model.kind = "vae"
  config.data.num_classes = 0
  assert data.load(config).info.num_classes == 7
  assert "3 of them (3..5) have no training example" in caplog.text


def test_unknown_data_set_name_lists_valid_names():
  config = helpers.config("default", **{"data.name": "no_such_data_set_xyz"})
  with pytest.raises(ValueError, match=r"Unknown data set name data.name="
                     r"'no_such_data_set_xyz': it is neither 'digits', "
                     r"'npz:.*' "
                     r"nor a TensorFlow Datasets builder.*digits.*mnist"):
    data.load(config)


def test_validate_split_checks_the_bernoulli_support():
  info = data.DataInfo("t", (3,), None, 17, "levels")
  split = data.Split(np.array([[0, 2, 16]], np.float32))
  data.validate_split(split, info, "categorical", "vae", "train")
  with pytest.raises(ValueError, match=r"x_validation has values outside "
                     r"\[0, 1\].*bernoulli"):
    data.validate_split(split, info, "bernoulli", "vae", "validation")


# --------------------------------------------------------------------- TFDS


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  # pylint: disable-next=g-import-not-at-top,unused-import
  from vib_flows.data import tfds_digits_builder  # noqa: F401
  tfds.disable_progress_bar()
  data_dir = tmp_path_factory.mktemp("tfds")
  start = time.perf_counter()
  builder = tfds.builder(data.TFDS_DIGITS_NAME, data_dir=str(data_dir))
  builder.download_and_prepare()
  elapsed = time.perf_counter() - start
  assert elapsed < 5.0, f"building the digits TFDS took {elapsed:.1f} s"
  return str(data_dir)


def test_tfds_digits_builder_loads_with_tfds_load(tfds_dir, sklearn_digits):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  x, y = sklearn_digits
  test = tfds.as_numpy(tfds.load(data.TFDS_DIGITS_NAME, split="test",
                                 data_dir=tfds_dir, batch_size=-1))
  assert test["image"].shape == (447, 8, 8, 1)
  np.testing.assert_array_equal(test["image"].reshape(447, 64), x[1350:])
  np.testing.assert_array_equal(test["label"], y[1350:])


@pytest.mark.parametrize("likelihood", ["categorical", "gaussian"])
def test_load_through_tfds_matches_digits(tfds_dir, likelihood):
  direct = data.load(
      helpers.config("default", **{"model.likelihood": likelihood}))
  via_tfds = data.load(helpers.config("default", **{
      "data.name": data.TFDS_DIGITS_NAME, "data.tfds_data_dir": tfds_dir,
      "model.likelihood": likelihood}))
  assert via_tfds.info.input_shape == (8, 8, 1)
  assert via_tfds.info.num_classes == 10
  assert via_tfds.info.num_levels == direct.info.num_levels
  assert via_tfds.info.preprocess == direct.info.preprocess
  for (name, a), (_, b) in zip(direct.items(), via_tfds.items()):
    assert b.x.dtype == np.float32, name
    np.testing.assert_array_equal(b.x.reshape(a.x.shape), a.x, err_msg=name)
    np.testing.assert_array_equal(b.y, a.y, err_msg=name)


def test_failed_tfds_download_says_what_to_do(tmp_path, monkeypatch):
  """A real download attempt of MNIST into an empty data_dir fails.

  TFDS retries a refused connection 10 times with exponential back-off
  (measured here without a network: 207 s until the error), so the test
  turns the retries off; and it routes the request to a closed local port, so
  the download fails the same way on a machine with a network.
  """
  from tensorflow_datasets.core.download import downloader  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(downloader, "MAX_RETRIES", 0)
  for proxy in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
    monkeypatch.setenv(proxy, "http://127.0.0.1:9")
  for no_proxy in ("NO_PROXY", "no_proxy"):
    monkeypatch.delenv(no_proxy, raising=False)
  start = time.perf_counter()
  with pytest.raises(faults.DataError) as error:
    data.load(helpers.config("default", **{
        "data.name": "mnist", "data.tfds_data_dir": str(tmp_path)}))
  assert time.perf_counter() - start < 60
  message = str(error.value)
  assert error.value.exit_status == 65 and "\n" not in message
  assert "Could not download the TensorFlow Datasets data set data.name=" \
      "'mnist'" in message
  import requests  # pylint: disable=g-import-not-at-top
  assert isinstance(error.value.__cause__, requests.ConnectionError)
  assert "storage.googleapis.com" in message  # The cause, in one line.
  for alternative in ("data.name='npz:/path/file.npz'", "data.tfds_data_dir=",
                      "data.name='digits'"):
    assert alternative in message
