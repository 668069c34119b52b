"""Checks that data fit the model, run by `load` before any training.

Every failure raises ValueError whose message names the problem and the
offending array ("x_train", "y_test", ...): wrong rank or shape, splits with
different input shapes, labels that are not 1-D or not one per example, empty
splits, NaN or infinite values, values outside the likelihood's support
(bernoulli: [0, 1]; categorical: integers 0..num_levels-1), labels outside
0..num_classes-1, and a VIB without labels. All checks are vectorized numpy.
"""

import numpy as np

from vib_flows.app import faults
from vib_flows.app import model_builder

MIN_RANK, MAX_RANK = 2, 4  # [N, D], [N, H, W] or [N, H, W, C].


def _first_bad(bad):
  """Index of the first example with a True in `bad` [N, ...]."""
  return int(np.argmax(bad.reshape(bad.shape[0], -1).any(axis=1)))


def check_x_array(x, key, input_shape=None):
  """Checks dtype, rank, emptiness, shape and finiteness of one x array.

  Args:
    x: the array, [N, *input_shape].
    key: its name in messages, e.g. "x_train".
    input_shape: the expected shape of one example, or None to skip.

  Raises:
    ValueError: see the module docstring.
  """
  x = np.asarray(x)
  if x.dtype.kind not in "biuf":
    raise ValueError(f"{key} must be a numeric array, got dtype {x.dtype}.")
  if not MIN_RANK <= x.ndim <= MAX_RANK:
    raise ValueError(
        f"{key} has the wrong rank: expected [N, *input_shape] of rank "
        f"{MIN_RANK} to {MAX_RANK} ([N, D], [N, H, W] or [N, H, W, C]), got "
        f"rank {x.ndim} with shape {x.shape}.")
  if x.shape[0] == 0:
    raise ValueError(f"{key} is empty: the split has no examples "
                     f"(shape {x.shape}).")
  if x.size == 0:
    raise ValueError(f"{key} is empty: its examples have no values "
                     f"(shape {x.shape}).")
  if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
    raise ValueError(
        f"{key} has the wrong shape: examples of shape {tuple(x.shape[1:])}, "
        f"expected {tuple(input_shape)} like the other splits.")
  if x.dtype.kind == "f":
    nan = np.isnan(x)
    if nan.any():
      raise ValueError(
          f"{key} has {int(nan.sum())} NaN value(s) (first in example "
          f"{_first_bad(nan)}).")
    inf = np.isinf(x)
    if inf.any():
      raise ValueError(
          f"{key} has {int(inf.sum())} infinite value(s) (first in example "
          f"{_first_bad(inf)}).")


def check_y_array(y, key, num_examples):
  """Checks that labels are 1-D, one per example, integer and non-negative.

  Args:
    y: the labels, [N].
    key: its name in messages, e.g. "y_train".
    num_examples: N, the number of examples of the matching x.

  Raises:
    ValueError: see the module docstring.
  """
  y = np.asarray(y)
  if y.ndim != 1:
    raise ValueError(
        f"{key} must be 1-D (one integer label per example), got shape "
        f"{y.shape}.")
  if y.shape[0] != num_examples:
    raise ValueError(
        f"{key} has length {y.shape[0]} but its x has {num_examples} "
        "examples: one label per example is needed.")
  if y.dtype.kind not in "biuf":
    raise ValueError(f"{key} must hold integer labels, got dtype {y.dtype}.")
  if y.dtype.kind == "f":
    non_integer = ~np.isfinite(y) | (y != np.round(y))
    if non_integer.any():
      i = int(np.argmax(non_integer))
      raise ValueError(
          f"{key} has non-integer label(s), e.g. {y[i]!r} at index {i}; "
          "labels must be class ids 0..num_classes-1.")
  negative = y < 0
  if negative.any():
    i = int(np.argmax(negative))
    raise ValueError(
        f"{key} has negative label(s), e.g. {y[i]!r} at index {i}; labels "
        "must be class ids 0..num_classes-1.")


def check_raw_values(x, key, raw_levels, preprocess):
  """Checks raw x against the source's value range before conversion.

  Conversion would otherwise hide bad values (e.g. thresholding maps 1.7 to 1).

  Args:
    x: raw x array (finite).
    key: its name in messages.
    raw_levels: R when x must hold integers 0..R-1, or None for float data.
    preprocess: the resolved representation.

  Raises:
    ValueError: integer data outside 0..R-1, or float data outside [0, 1] for
      "scale", "static", "threshold" or "dynamic".
  """
  x = np.asarray(x)
  if raw_levels is not None:
    if x.dtype.kind == "f":
      non_integer = x != np.round(x)
      if non_integer.any():
        raise ValueError(
            f"{key} has non-integer intensities (first in example "
            f"{_first_bad(non_integer)}); expected integers "
            f"0..{raw_levels - 1}.")
    lo, hi = x.min(), x.max()
    if lo < 0 or hi > raw_levels - 1:
      raise ValueError(
          f"{key} has values outside 0..{raw_levels - 1} (min {lo}, max {hi}), "
          f"the range of its {raw_levels} intensity levels (set "
          "model.num_levels to the data's number of levels).")
  elif preprocess in ("scale", "static", "threshold", "dynamic"):
    lo, hi = x.min(), x.max()
    if lo < 0 or hi > 1:
      raise ValueError(
          f"{key} has values outside [0, 1] (min {lo}, max {hi}): float data "
          f"must be grey values in [0, 1] for data.preprocess={preprocess!r}.")


def _check_range(x, key, lo_ok, hi_ok, what):
  """Raises if x has values outside [lo_ok, hi_ok]; `what` names the support."""
  lo, hi = x.min(), x.max()
  if lo < lo_ok or hi > hi_ok:
    bad = (x < lo_ok) | (x > hi_ok)
    raise ValueError(
        f"{key} has values outside {what} (min {lo}, max {hi}; first in "
        f"example {_first_bad(bad)}).")


def _check_support(x, key, info, likelihood, kind):
  """Checks x against the support of the likelihood and representation.

  `likelihood` is the likelihood of x only for a model of x (`models_inputs`
  of the class of `kind`, the VAE); for the others x is only in the range of
  its representation.
  """
  x_likelihood = (likelihood if model_builder.model_class(kind).models_inputs
                  else None)
  if x_likelihood == "categorical" and info.preprocess != "levels":
    raise faults.ConfigError(
        "model.likelihood='categorical' needs integer levels: "
        f"data.preprocess must be 'levels' or 'auto', got {info.preprocess!r}.")
  if info.preprocess == "levels":
    top = info.num_levels - 1
    what = (f"0..{top}, the support of the categorical likelihood with "
            f"num_levels={info.num_levels}")
    non_integer = x != np.round(x)
    if non_integer.any():
      raise ValueError(
          f"{key} has non-integer values (first in example "
          f"{_first_bad(non_integer)}); expected integer levels {what}.")
    _check_range(x, key, 0, top, what)
  else:  # "scale", "static", "threshold", "dynamic": [0, 1] or binary.
    _check_range(x, key, 0, 1,
                 f"[0, 1], the range of data.preprocess={info.preprocess!r}")
  if x_likelihood == "bernoulli":
    _check_range(x, key, 0, 1,
                 "[0, 1], the support of the bernoulli likelihood")


def validate_split(split, info, likelihood, kind, name="train"):
  """Checks that one converted split fits the model; call before training.

  Args:
    split: a `Split` (x float32 [N, *input_shape], y int [N] or None).
    info: the `DataInfo` of the data set.
    likelihood: `config.model.likelihood` ("categorical", "bernoulli",
      "gaussian"); the support check applies to models of x (the VAE).
    kind: `config.model.kind`; its class's `needs_labels` (the VIB) makes
      labels required.
    name: the split's name for messages ("train", "validation", "test").

  Raises:
    ValueError: naming the problem and the array, e.g. "x_test has values
      outside [0, 1] ...": wrong rank/shape, empty split, NaN/inf, values
      outside the likelihood's support, bad labels, VIB without labels.
  """
  x_key, y_key = f"x_{name}", f"y_{name}"
  check_x_array(split.x, x_key, info.input_shape)
  x = np.asarray(split.x)
  _check_support(x, x_key, info, likelihood, kind)
  if split.y is None:
    if model_builder.model_class(kind).needs_labels:
      raise ValueError(
          f"model.kind={kind!r} needs labels, but the {name} split has none "
          f"({y_key} is missing); give labels or use model.kind='vae'.")
    return
  check_y_array(split.y, y_key, x.shape[0])
  if info.num_classes is not None:
    y = np.asarray(split.y)
    outside = y > info.num_classes - 1
    if outside.any():
      i = int(np.argmax(outside))
      raise ValueError(
          f"{y_key}[{i}] = {y[i]} is outside the classes "
          f"0..{info.num_classes - 1} (num_classes={info.num_classes}).")


def validate_splits(splits, likelihood, kind):
  """Runs `validate_split` on the train, test and validation splits.

  A validation split that is the test split itself (no validation data and
  `data.validation_size == 0`) is checked once, under the name "test".
  """
  named = [("train", splits.train), ("test", splits.test)]
  if splits.validation is not splits.test:
    named.append(("validation", splits.validation))
  for name, split in named:
    validate_split(split, splits.info, likelihood, kind, name=name)
