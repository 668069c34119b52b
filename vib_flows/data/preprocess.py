"""Conversion of raw pixels to the likelihood's representation (numpy).

Representations (`config.data.preprocess`):
  "levels": integer intensities 0..L-1 stored as float32, for the categorical
    likelihood; L = `model.num_levels`, or the source's levels R when that is
    0. When L != R the data are requantized: L < R bins R values into L equal
    bins (floor(v * L / R)), L > R stretches v to round(v * (L-1) / (R-1)).
  "scale": grey values v / (R-1) in [0, 1] (gaussian likelihood).
  "static": binary {0, 1}: one fixed draw x ~ Bernoulli(grey value) of every
    split, seeded by `data.binarization_seed` and the split (the protocol of
    Larochelle & Murray 2011's binarized MNIST, with another draw); data
    that are already binary stay as they are.
  "threshold": binary {0, 1}: the [0, 1] grey values thresholded at 0.5.
  "dynamic": the training split keeps its [0, 1] grey values and the input
    pipeline draws binary x ~ Bernoulli(grey value) afresh for each epoch
    (Salakhutdinov & Murray 2008; the binarization of the IWAE and flow
    papers); the validation and test splits are drawn once, as "static"
    draws them, so that every evaluation sees the same binary images.
  "auto": for a model with a likelihood of x (`models_inputs`, the VAE):
    "levels" for a categorical, "static" for a bernoulli, "scale" for a
    gaussian likelihood; "scale" for the others (the VIB: a classifier reads
    [0, 1] inputs; its likelihood is over labels).
"""

import numpy as np

from vib_flows import distributions
from vib_flows.app import model_builder

AUTO = {"categorical": "levels", "bernoulli": "static", "gaussian": "scale"}
PREPROCESS = ("auto", "levels", "scale", "static", "threshold", "dynamic")
# Representations whose x are binary {0, 1} in every split the model reads.
BINARY = ("static", "threshold")
# Split numbers in the seeds of the fixed Bernoulli draws.
SPLIT_NUMBERS = {"train": 0, "validation": 1, "test": 2}


def resolve(config):
  """Returns (kind, likelihood, preprocess) from the config, "auto" resolved.

  Args:
    config: the ConfigDict (reads model.kind, model.likelihood,
      data.preprocess); model.kind is checked by `config_checks.validate`.

  Raises:
    ValueError: an unknown likelihood, preprocess or (with "auto") model
      kind (the valid ones are listed).
  """
  kind = str(config.model.kind)
  likelihood = str(config.model.likelihood)
  preprocess = str(config.data.preprocess)
  for field, value, valid in (
      ("model.likelihood", likelihood, distributions.likelihood_names()),
      ("data.preprocess", preprocess, PREPROCESS)):
    if value not in valid:
      raise ValueError(
          f"Unknown {field} {value!r}; valid values: {', '.join(valid)}.")
  if preprocess == "auto":
    models_inputs = model_builder.model_class(kind).models_inputs
    preprocess = AUTO[likelihood] if models_inputs else "scale"
  return kind, likelihood, preprocess


def target_levels(config_levels, raw_levels):
  """The number of levels L of the "levels" representation.

  Args:
    config_levels: `config.model.num_levels` (0 or None: keep the source's).
    raw_levels: the source's levels R, or None for float [0, 1] data.

  Returns:
    L >= 2.

  Raises:
    ValueError: model.num_levels < 2 and not 0, or neither is known.
  """
  if config_levels:
    if int(config_levels) < 2:
      raise ValueError(
          f"model.num_levels must be >= 2 (or 0: the data's own levels), got "
          f"{config_levels}.")
    return int(config_levels)
  if raw_levels is None:
    raise ValueError(
        "model.num_levels is 0 and the data are float values with no known "
        "number of levels; set model.num_levels for the categorical "
        "likelihood.")
  return int(raw_levels)


def requantize(x, raw_levels, num_levels):
  """Maps integer intensities 0..R-1 to 0..L-1 (see the module docstring).

  Args:
    x: array of integers 0..R-1 (any numeric dtype).
    raw_levels: R.
    num_levels: L.

  Returns:
    float32 array of the shape of x with integers 0..L-1.
  """
  if num_levels == raw_levels:
    return x.astype(np.float32)
  v = x.astype(np.int64)
  if num_levels < raw_levels:
    return ((v * num_levels) // raw_levels).astype(np.float32)
  stretched = np.rint(v * ((num_levels - 1) / (raw_levels - 1)))
  return stretched.astype(np.float32)


def to_unit_interval(x, raw_levels):
  """Grey values in [0, 1]: v / (R-1), or x unchanged for float data."""
  if raw_levels is None:
    return x.astype(np.float32)
  return (x.astype(np.float32) / np.float32(raw_levels - 1)).astype(np.float32)


def bernoulli_draw(p, seed, split):
  """One fixed binary draw x ~ Bernoulli(p) of a split's grey values.

  Args:
    p: float32 [N, ...] grey values in [0, 1].
    seed: `data.binarization_seed`.
    split: "train", "validation" or "test": each split has its own stream.

  Returns:
    float32 {0, 1} array of the shape of `p`; the same for the same seed,
    split and values, on every machine (NumPy's PCG64 and its float32
    uniform draw are platform-independent).
  """
  rng = np.random.default_rng([int(seed), SPLIT_NUMBERS[split]])
  return (rng.random(np.shape(p), dtype=np.float32) < p).astype(np.float32)


def convert(x, preprocess, raw_levels, num_levels=None, split="train",
            seed=0):
  """Converts raw x to the representation `preprocess` ("auto" resolved).

  Args:
    x: [N, *input_shape] raw values: integers 0..R-1 when `raw_levels` is R,
      float values when it is None.
    preprocess: "levels", "scale", "static", "threshold" or "dynamic".
    raw_levels: R, or None for float data (taken as already in [0, 1], or as
      integer-valued levels for "levels").
    num_levels: L for "levels".
    split: the split's name ("train", "validation", "test"): selects the
      stream of the fixed Bernoulli draws, and whether "dynamic" draws (every
      split but "train").
    seed: `data.binarization_seed`, the seed of the fixed draws.

  Returns:
    float32 [N, *input_shape].
  """
  if preprocess == "levels":
    if raw_levels is None:
      return x.astype(np.float32)
    return requantize(x, raw_levels, num_levels)
  unit = to_unit_interval(x, raw_levels)
  if preprocess == "threshold":
    return (unit > 0.5).astype(np.float32)
  if preprocess == "static" or (preprocess == "dynamic" and split != "train"):
    return bernoulli_draw(unit, seed, split)
  return unit  # "scale", and the training split of "dynamic".
