"""`load(config)`: the data set of `config.data.name`, validated, in memory.

Errors: a config field that cannot work with the data (an unknown name, a
preprocess the likelihood cannot read, data.validation_size, data.num_classes
against the source's own count) raises `faults.ConfigError`; data that cannot
be read or do not fit the model raise `faults.DataError`. Both are
ValueErrors.
"""

from absl import logging
import numpy as np

from vib_flows.app import faults
from vib_flows.app import model_builder
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


# The largest class count inferred from the labels (a one-hot row of this
# many classes is 64 MB); beyond it a label is taken for a mistake.
MAX_CLASSES = 2**24


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


def _ranges(values):
  """"3, 10..49" for the sorted ints [3, 10, 11, ..., 49]."""
  parts, start = [], None
  for i, v in enumerate(values):
    if start is None:
      start = v
    if i + 1 == len(values) or values[i + 1] != v + 1:
      parts.append(str(v) if v == start else f"{start}..{v}")
      start = None
  return ", ".join(parts)


def _num_classes(raw, declared, kind, name):
  """The number of classes K; refuses labels outside 0..K-1, naming the row.

  K is `data.num_classes` when set (> 0), else the source's own count, else
  the largest training label + 1 (or over all labels without training
  labels). An inferred K that leaves classes with no training example is
  refused for a model that needs labels (a VIB: its classifier would have K
  outputs; a stray label 50 in a 10-class set would make 51) and warned
  about for one that does not use them (a VAE).

  Args:
    raw: the `RawData` (labels already checked by `_check_raw`).
    declared: `data.num_classes` (0: infer).
    kind: `model.kind` (its class's `needs_labels`).
    name: `data.name`, for messages.

  Returns:
    K, or None when no split has labels.

  Raises:
    faults.ConfigError: data.num_classes differs from the source's count.
    faults.DataError: a label outside 0..K-1, an inferred K with empty
      classes, or fewer than 2 classes, for a model that needs labels.
  """
  needs_labels = model_builder.model_class(kind).needs_labels
  labelled = [(split_name, np.asarray(getattr(raw, split_name).y))
              for split_name in RAW_SPLITS
              if getattr(raw, split_name) is not None
              and getattr(raw, split_name).y is not None]
  if not labelled:
    return None
  declared = int(declared or 0)
  if declared and raw.num_classes is not None and (
      declared != raw.num_classes):
    raise faults.ConfigError(
        f"data.num_classes={declared}, but data.name={name!r} has "
        f"{raw.num_classes} classes; set data.num_classes=0 (or "
        f"{raw.num_classes}).")
  inferred = not declared and raw.num_classes is None
  if declared:
    count, why = declared, f"data.num_classes={declared}"
  elif raw.num_classes is not None:
    count, why = int(raw.num_classes), f"{name!r} has {raw.num_classes} classes"
  else:
    train_labels = dict(labelled).get("train")
    source = [train_labels] if train_labels is not None else [
        y for _, y in labelled]
    largest = max(float(np.max(y)) for y in source)
    if largest >= MAX_CLASSES:
      split_name, y = next((n, y) for n, y in labelled
                           if any(y is s for s in source)
                           and float(np.max(y)) == largest)
      i = int(np.argmax(y))
      raise faults.DataError(
          f"y_{split_name}[{i}] = {y[i]!r} is no class id: labels are "
          f"0..num_classes-1, and a class count beyond {MAX_CLASSES} "
          "cannot be inferred; fix the label or set data.num_classes.")
    count = int(largest) + 1
    why = "inferred as the largest training label + 1"
  for split_name, y in labelled:
    outside = y > count - 1
    if outside.any():
      i = int(np.argmax(outside))
      raise faults.DataError(
          f"y_{split_name}[{i}] = {int(y[i])} is outside the classes "
          f"0..{count - 1} ({why}); fix the label or set data.num_classes.")
  if inferred and "train" in dict(labelled):
    y = dict(labelled)["train"]
    empty = np.flatnonzero(np.bincount(y.astype(np.int64),
                                       minlength=count) == 0)
    if empty.size:
      i = int(np.argmax(y == count - 1))
      message = (
          f"y_train[{i}] = {count - 1} makes {count} classes (the largest "
          f"label + 1), but {empty.size} of them ({_ranges(empty.tolist())}) "
          "have no training example")
      if needs_labels:
        raise faults.DataError(
            f"{message}: fix the label, or set data.num_classes={count} to "
            "train a classifier with empty classes.")
      logging.warning("%s; data.num_classes sets the count.", message)
  if needs_labels and count < 2:
    raise faults.DataError(
        f"model.kind={kind!r} needs at least 2 classes, but the labels give "
        f"{count} ({why}).")
  return count


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
      data.num_classes, model.kind, model.likelihood and model.num_levels.

  Returns:
    `DataSplits(train, validation, test, info)`: x float32 [N, *input_shape]
    in the representation `info.preprocess` (see `vib_flows.data.preprocess`),
    y int64 [N] or None.

  Raises:
    faults.ConfigError: (a ValueError) an unknown name, or a config field
      that cannot work with the data (preprocess, validation_size,
      num_levels, num_classes), before any training starts.
    faults.DataError: (a ValueError) unreadable files, or data that do not
      fit the model (see `vib_flows.data.validation`; labels outside
      0..num_classes-1), before any training starts.
    RuntimeError: a TFDS data set that is not prepared could not be
      downloaded (e.g. no network); the message names the offline choices.
  """
  with faults.mistakes_are(faults.ConfigError):
    kind, likelihood, preprocess = preprocess_lib.resolve(config)
    if synthetic.is_synthetic_name(config.data.name):
      synthetic.variant_of(config.data.name)  # A known name first.
      synthetic.check_model(kind, likelihood, preprocess,
                            model_builder.model_class(kind))
  with faults.mistakes_are(faults.DataError):
    raw = load_raw(config)
    _check_raw(raw, preprocess)
  num_classes = _num_classes(raw, _optional(config.data, "num_classes", 0),
                             kind, str(config.data.name))
  with faults.mistakes_are(faults.ConfigError):
    train, valid, test = _hold_out_validation(
        raw, _optional(config.data, "validation_size", 0))
    num_levels = None
    if preprocess == "levels":
      num_levels = preprocess_lib.target_levels(
          _optional(config.model, "num_levels", 0), raw.levels)
      if raw.levels is not None and num_levels != raw.levels:
        logging.info("Requantizing %s from %d to %d levels.",
                     config.data.name, raw.levels, num_levels)

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
  with faults.mistakes_are(faults.DataError):
    validation.validate_splits(splits, likelihood, kind)
  if synthetic.is_synthetic_name(config.data.name):
    splits = synthetic.with_truth(splits, config.data.name)
  return splits
