"""`load(config)`: the data set of `config.data.name`, validated, in memory."""

from absl import logging
import numpy as np

from vib_flows.data import digits
from vib_flows.data import idx
from vib_flows.data import npz
from vib_flows.data import preprocess as preprocess_lib
from vib_flows.data import synthetic
from vib_flows.data import tfds_source
from vib_flows.data import validation
from vib_flows.data.containers import DataInfo
from vib_flows.data.containers import DataSplits
from vib_flows.data.containers import Split

RAW_SPLITS = ("train", "validation", "test")


def _optional(config_dict, field, default):
  """config_dict.field if the (possibly locked) ConfigDict has it."""
  try:
    value = config_dict.get(field, default)
  except AttributeError:
    value = getattr(config_dict, field, default)
  return default if value is None else value


def load_raw(config):
  """Loads the source named by `config.data.name` without converting it.

  Args:
    config: the ConfigDict (reads data.name, data.tfds_data_dir,
      model.num_levels).

  Returns:
    A `RawData` (see `vib_flows.data.containers`).

  Raises:
    ValueError: unknown name, missing or unreadable npz file or keys.
  """
  name = str(config.data.name)
  if name == digits.NAME:
    return digits.load_raw()
  if npz.is_npz_name(name):
    return npz.load_raw(name, _optional(config.model, "num_levels", 0))
  if idx.is_idx_name(name):
    return idx.load_raw(name)
  if synthetic.is_synthetic_name(name):
    return synthetic.load_raw(name)
  data_dir = str(_optional(config.data, "tfds_data_dir", "")) or None
  return tfds_source.load_raw(name, data_dir=data_dir)


def _check_raw(raw, preprocess):
  """Validates the raw arrays (names as the npz keys: x_train, y_test, ...)."""
  input_shape = None
  for name in RAW_SPLITS:
    split = getattr(raw, name)
    if split is None:
      continue
    x_key = f"x_{name}"
    validation.check_x_array(split.x, x_key, input_shape)
    input_shape = tuple(np.shape(split.x)[1:])
    validation.check_raw_values(split.x, x_key, raw.levels, preprocess)
    if split.y is not None:
      validation.check_y_array(split.y, f"y_{name}", np.shape(split.x)[0])


def _hold_out_validation(raw, validation_size):
  """Fills in a missing validation split.

  Args:
    raw: `RawData`, possibly with `validation` None.
    validation_size: examples held out from the end of train when the source
      has no validation split; 0 uses the test split for validation.

  Returns:
    (train, validation, test) `Split`s.

  Raises:
    ValueError: validation_size < 0 or leaving no training examples.
  """
  validation_size = int(validation_size)
  if validation_size < 0:
    raise ValueError(
        f"data.validation_size must be >= 0, got {validation_size}.")
  if raw.validation is not None:
    if validation_size:
      logging.warning(
          "data.validation_size=%d ignored: the data set has its own "
          "validation split.", validation_size)
    return raw.train, raw.validation, raw.test
  if not validation_size:
    return raw.train, raw.test, raw.test
  n = np.shape(raw.train.x)[0]
  if validation_size >= n:
    raise ValueError(
        f"data.validation_size={validation_size} leaves no training examples: "
        f"x_train has only {n}.")
  keep = n - validation_size

  def part(s):
    return Split(raw.train.x[s],
                 None if raw.train.y is None else raw.train.y[s])

  return part(slice(0, keep)), part(slice(keep, None)), raw.test


def _num_classes(raw, splits):
  """Classes: the source's count, else max(y_train) + 1 (or over all labels)."""
  if raw.num_classes is not None:
    return int(raw.num_classes)
  labelled = [s.y for s in splits if s.y is not None]
  if raw.train.y is not None:
    labelled = [raw.train.y]
  if not labelled:
    return None
  return int(max(np.max(y) for y in labelled)) + 1


def load(config):
  """Loads, converts and validates the data set of `config.data.name`.

  Names:
    "digits": scikit-learn's 8x8 digits, x [N, 64] with 17 levels (0..16);
      splits as in Tomczak's "Deep Generative Modeling" code: the first 1000
      examples (load_digits order) train, the next 350 validation, the last
      447 test.
    "npz:/path/file.npz": x_train, x_test (+ y_train, y_test; optional
      x_validation, y_validation), see `vib_flows.data.npz`.
    "idx:/path/to/folder": the four IDX files of MNIST, Fashion-MNIST or
      KMNIST (plain or gzip), x [N, 28, 28, 1] with 256 levels, see
      `vib_flows.data.idx`.
    "synthetic:banana", "synthetic:bimodal", "synthetic:ring": binary x
      [N, 64] from a known 2-D latent model (`vib_flows.data.synthetic`):
      fixed validation and test sets of 1000, a fresh training set of 10000
      each epoch, and the exact log p(x) (`DataSplits.exact_log_likelihood`).
    anything else: a TFDS name loaded with `tfds.load(name,
      data_dir=data.tfds_data_dir or None)`, features "image" and "label".
  Without a validation split, `data.validation_size` examples are held out
  from the end of train (0: validation is the test split).

  Args:
    config: the ConfigDict; reads data.name, data.preprocess,
      data.validation_size, data.tfds_data_dir, data.binarization_seed,
      model.kind, model.likelihood and model.num_levels.

  Returns:
    `DataSplits(train, validation, test, info)`: x float32 [N, *input_shape]
    in the representation `info.preprocess` (see `vib_flows.data.preprocess`),
    y int64 [N] or None.

  Raises:
    ValueError: unknown names, unreadable files, or data that do not fit the
      model (see `vib_flows.data.validation`), before any training starts.
    RuntimeError: a TFDS data set that is not prepared could not be
      downloaded (e.g. no network); the message names the offline choices.
  """
  kind, likelihood, preprocess = preprocess_lib.resolve(config)
  if synthetic.is_synthetic_name(config.data.name):
    synthetic.check_model(kind, likelihood, preprocess)
  raw = load_raw(config)
  _check_raw(raw, preprocess)
  train, valid, test = _hold_out_validation(
      raw, _optional(config.data, "validation_size", 0))
  num_levels = None
  if preprocess == "levels":
    num_levels = preprocess_lib.target_levels(
        _optional(config.model, "num_levels", 0), raw.levels)
    if raw.levels is not None and num_levels != raw.levels:
      logging.info("Requantizing %s from %d to %d levels.", config.data.name,
                   raw.levels, num_levels)
  num_classes = _num_classes(raw, (train, valid, test))

  seed = int(_optional(config.data, "binarization_seed", 0))

  def convert(split, split_name):
    x = preprocess_lib.convert(np.asarray(split.x), preprocess, raw.levels,
                               num_levels, split=split_name, seed=seed)
    y = None if split.y is None else np.asarray(split.y).astype(np.int64)
    return Split(x, y)

  if valid is test:
    converted = [convert(train, "train"), None, convert(test, "test")]
    converted[1] = converted[2]
  else:
    converted = [convert(s, n) for s, n in ((train, "train"),
                                             (valid, "validation"),
                                             (test, "test"))]
  info = DataInfo(
      name=str(config.data.name),
      input_shape=tuple(int(d) for d in converted[0].x.shape[1:]),
      num_classes=num_classes,
      num_levels=num_levels,
      preprocess=preprocess)
  splits = DataSplits(*converted, info=info)
  validation.validate_splits(splits, likelihood, kind)
  if synthetic.is_synthetic_name(config.data.name):
    splits = synthetic.with_truth(splits, config.data.name)
  return splits
