"""The user's own arrays from an .npz file (`data.name = "npz:/path/file.npz"`).

Keys:
  x_train, x_test (required): [N, *input_shape] numeric arrays.
  y_train, y_test (optional for a VAE, required for a VIB): [N] integer labels.
  x_validation, y_validation (optional): a validation split; without it `load`
    holds out `data.validation_size` examples from the end of train (or uses
    the test split when that is 0).

How x values are read (the dtype of x_train decides, and every split must have
the same dtype kind):
  uint8: 8-bit intensities 0..255 (256 levels), like TFDS images.
  bool: binary images (2 levels).
  other integer dtypes: intensities 0..model.num_levels-1.
  float: values already in the likelihood's representation: grey values in
    [0, 1] for "scale"/"static"/"threshold"/"dynamic", integer-valued levels
    0..model.num_levels-1 for "levels".
"""

import os
import zipfile

import numpy as np

from vib_flows.data.containers import RawData
from vib_flows.data.containers import Split

PREFIX = "npz:"
NPY_MAGIC = b"\x93NUMPY"  # The first bytes of a .npy file.
REQUIRED_KEYS = ("x_train", "x_test")
OPTIONAL_KEYS = ("y_train", "y_test", "x_validation", "y_validation")


def is_npz_name(name):
  """True for data set names of the form "npz:/path/file.npz"."""
  return str(name).startswith(PREFIX)


def path_from_name(name):
  """Returns the path of "npz:/path/file.npz" (user ~ expanded)."""
  return os.path.expanduser(str(name)[len(PREFIX):])


def read_arrays(path):
  """Reads every array of an .npz file into memory.

  Args:
    path: the .npz file.

  Returns:
    A dict key -> np.ndarray.

  Raises:
    ValueError: the file does not exist, is not a readable .npz archive (a
      single .npy array, or not a zip file at all) or holds pickled (object)
      arrays.
  """
  if not path:
    raise ValueError(
        'data.name "npz:" names no file; use "npz:/path/file.npz".')
  if not os.path.isfile(path):
    raise ValueError(f"npz file not found: {path!r} (from data.name).")
  if not zipfile.is_zipfile(path):
    with open(path, "rb") as f:
      npy = f.read(len(NPY_MAGIC)) == NPY_MAGIC
    if npy:
      raise ValueError(
          f"npz file {path!r} is a single .npy array, not an .npz archive; "
          "save x_train, x_test, ... with np.savez.")
    raise ValueError(
        f"npz file {path!r} is not a valid .npz/.zip archive (np.savez "
        "writes one, with arrays x_train, x_test, ...).")
  try:
    archive = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise ValueError(f"npz file {path!r} is not readable: {e}") from e
  if not isinstance(archive, np.lib.npyio.NpzFile):
    raise ValueError(
        f"npz file {path!r} is not readable as an .npz archive: it holds a "
        "single array; save x_train, x_test, ... with np.savez.")
  try:
    with archive:
      return {key: archive[key] for key in archive.files}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise ValueError(f"npz file {path!r} is not readable: {e}") from e


def x_levels(arrays, num_levels):
  """The raw intensity levels of the x arrays (see the module docstring).

  Args:
    arrays: dict key -> array, as read from the file.
    num_levels: `config.model.num_levels` (used for non-uint8 integer x).

  Returns:
    The number of levels R (x holds integers 0..R-1), or None for float x.

  Raises:
    ValueError: an x array is not numeric, the x arrays mix integer and float
      dtypes, or integer x comes without a model.num_levels.
  """
  x_keys = [k for k in ("x_train", "x_validation", "x_test") if k in arrays]
  for key in x_keys:
    if arrays[key].dtype.kind not in "biuf":
      raise ValueError(
          f"{key} must be a numeric array, got dtype {arrays[key].dtype}.")
  kinds = {k: arrays[k].dtype.kind for k in x_keys}
  is_float = {k: kind == "f" for k, kind in kinds.items()}
  if len(set(is_float.values())) > 1:
    raise ValueError(
        "x arrays mix integer and float dtypes "
        f"({', '.join(f'{k}: {arrays[k].dtype}' for k in x_keys)}); "
        "give every split the same dtype.")
  dtype = arrays["x_train"].dtype
  if dtype.kind == "f":
    return None
  if dtype.kind == "b":
    return 2
  if dtype == np.uint8:
    return 256
  if not num_levels or int(num_levels) < 2:
    raise ValueError(
        f"x_train has integer dtype {dtype}: set model.num_levels (>= 2) to "
        f"the number of intensity levels, got {num_levels}.")
  return int(num_levels)


def load_raw(name, num_levels):
  """Loads "npz:/path/file.npz" as raw arrays.

  Args:
    name: the data set name, "npz:" followed by the path.
    num_levels: `config.model.num_levels`, the levels of integer (non-uint8) x.

  Returns:
    A `RawData`: x arrays as stored, labels as stored or None, `validation`
    None when the file has no x_validation, `num_classes` None (inferred by
    `load` from y_train).

  Raises:
    ValueError: the file is missing or unreadable, a required key is missing,
      y_validation comes without x_validation, or x is not numeric.
  """
  path = path_from_name(name)
  arrays = read_arrays(path)
  missing = [k for k in REQUIRED_KEYS if k not in arrays]
  if missing:
    raise ValueError(
        f"npz file {path!r} is missing key(s) {', '.join(missing)} "
        f"(it has: {', '.join(sorted(arrays)) or 'no arrays'}; required: "
        f"{', '.join(REQUIRED_KEYS)}; optional: {', '.join(OPTIONAL_KEYS)}).")
  if "y_validation" in arrays and "x_validation" not in arrays:
    raise ValueError(
        f"npz file {path!r} has y_validation but no x_validation.")
  levels = x_levels(arrays, num_levels)
  validation = None
  if "x_validation" in arrays:
    validation = Split(arrays["x_validation"], arrays.get("y_validation"))
  return RawData(
      train=Split(arrays["x_train"], arrays.get("y_train")),
      validation=validation,
      test=Split(arrays["x_test"], arrays.get("y_test")),
      levels=levels,
      num_classes=None)
