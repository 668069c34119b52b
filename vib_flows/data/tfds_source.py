"""TensorFlow Datasets sources (`data.name` = "mnist", "binarized_mnist", ...).

Each split is read once into numpy (`tfds.load(..., batch_size=-1)`): the data
sets this package is meant for (MNIST-sized) fit in memory, and the tf.data
pipeline of `vib_flows.data.pipeline` then works from these arrays.

Features: "image" is x and "label" (optional) is y, like `as_supervised`.
Levels of x: a builder may state them in `info.metadata["num_levels"]` (the
local "vib_flows_digits" builder does: 17); otherwise uint8 images are 8-bit
intensities (256 levels) unless every value is 0 or 1 (binary images such as
"binarized_mnist": 2 levels), and float images are taken as [0, 1] values.
"""

import urllib.error

import numpy as np

from vib_flows.app import faults
from vib_flows.data.containers import RawData
from vib_flows.data.containers import Split

IMAGE_KEY = "image"
LABEL_KEY = "label"
EXAMPLE_NAMES = ("mnist", "binarized_mnist", "fashion_mnist", "emnist",
                 "kmnist", "cifar10", "vib_flows_digits")


def _import_tfds():
  """Imports tensorflow_datasets and registers the local digits builder."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  # Registers "vib_flows_digits" as a TFDS name.
  # pylint: disable-next=g-import-not-at-top,unused-import
  from vib_flows.data import tfds_digits_builder  # noqa: F401
  return tfds


def get_builder(name, data_dir=None):
  """Returns the TFDS builder `name`.

  Raises:
    faults.ConfigError: (a ValueError) `name` is not a TFDS data set (the
      message says it is neither "digits", "npz:..." nor a TFDS builder, and
      lists a few valid names).
  """
  tfds = _import_tfds()
  try:
    return tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise faults.ConfigError(
        f"Unknown data set name data.name={name!r}: it is neither 'digits', "
        "'npz:/path/file.npz', 'idx:/path/to/folder' nor a TensorFlow "
        "Datasets builder. Valid names include: digits, npz:/path/file.npz, "
        f"idx:/path/to/folder, {', '.join(EXAMPLE_NAMES)} "
        "(any name of tfds.list_builders())."
    ) from e


def _download_errors(tfds):
  """Exceptions of a failed TFDS download: no network, refused, HTTP error.

  TFDS fetches http(s) URLs with `requests` (a TFDS dependency) and ftp URLs
  with `urllib`.
  """
  import requests  # pylint: disable=g-import-not-at-top
  return (requests.exceptions.RequestException, urllib.error.URLError,
          tfds.download.DownloadError)


def _one_line(error):
  """The message of `error` on one line (requests' can span several)."""
  return " ".join(str(error).split())


def download_and_prepare(builder, name):
  """`builder.download_and_prepare()`, with a clear error if downloading fails.

  Raises:
    faults.DataError: the download failed (typically: no network). The
      message names the data set and the offline alternatives (status 65).
  """
  try:
    builder.download_and_prepare()
  except _download_errors(_import_tfds()) as e:
    raise faults.DataError(
        f"Could not download the TensorFlow Datasets data set data.name="
        f"{name!r} (no network connection?): {type(e).__name__}: "
        f"{_one_line(e)}. "
        "Without a network, use data on disk instead: "
        "data.name='idx:/path/to/folder' (MNIST's four IDX files), "
        "data.name='npz:/path/file.npz' (arrays x_train, x_test, y_train, "
        "y_test), data.tfds_data_dir=DIR where the data set is already "
        f"prepared (e.g. `tfds build {name} --data_dir=DIR` on a machine with "
        "a network, then copy DIR), or the bundled data.name='digits'."
    ) from e


def _x_levels(info, images):
  """The raw intensity levels of the image arrays (see the module docstring)."""
  levels = info.metadata.get("num_levels") if info.metadata else None
  if levels:
    return int(levels)
  first = images[0]
  if first.dtype.kind == "f":
    return None
  if first.dtype.kind == "b":
    return 2
  if first.dtype == np.uint8:
    binary = all(int(a.max(initial=0)) <= 1 for a in images)
    return 2 if binary else 256
  raise ValueError(
      f"TFDS data set {info.name!r}: feature {IMAGE_KEY!r} has dtype "
      f"{first.dtype}; expected uint8 or float images.")


def load_raw(name, data_dir=None):
  """Loads a TFDS data set into numpy arrays.

  Uses the "train" and "test" splits, and "validation" where the data set has
  one (e.g. "binarized_mnist"). Building happens on first use (a download for
  the public data sets; offline for "vib_flows_digits").

  Args:
    name: a TFDS name, optionally with config and version ("mnist:3.*.*").
    data_dir: TFDS data directory, or None for the TFDS default.

  Returns:
    A `RawData` with x [N, *image_shape] as stored (e.g. uint8 [N, 28, 28, 1]),
    int64 labels or None, and the levels described in the module docstring.

  Raises:
    ValueError: unknown name, no "image" feature, no "train" or "test" split.
    faults.DataError: the data set is not prepared in `data_dir` and
      downloading it failed (e.g. no network).
  """
  tfds = _import_tfds()
  builder = get_builder(name, data_dir)
  features = builder.info.features
  if IMAGE_KEY not in features:
    raise ValueError(
        f"TFDS data set {name!r} has no {IMAGE_KEY!r} feature (features: "
        f"{', '.join(features.keys())}); vib_flows reads 'image' and 'label'.")
  download_and_prepare(builder, name)
  splits = builder.info.splits
  for required in ("train", "test"):
    if required not in splits:
      raise ValueError(
          f"TFDS data set {name!r} has no {required!r} split (splits: "
          f"{', '.join(splits.keys())}).")
  wanted = ["train", "test"] + (["validation"] if "validation" in splits
                                else [])
  keys = [IMAGE_KEY] + ([LABEL_KEY] if LABEL_KEY in features else [])
  tensors = tfds.load(name, split=wanted, data_dir=data_dir, batch_size=-1)
  arrays = {}
  for split_name, tensor_dict in zip(wanted, tensors):
    arrays[split_name] = {k: np.asarray(tensor_dict[k]) for k in keys}
  levels = _x_levels(builder.info, [a[IMAGE_KEY] for a in arrays.values()])
  num_classes = None
  if LABEL_KEY in features:
    num_classes = getattr(features[LABEL_KEY], "num_classes", None)

  def split(split_name):
    if split_name not in arrays:
      return None
    a = arrays[split_name]
    y = a.get(LABEL_KEY)
    return Split(a[IMAGE_KEY], None if y is None else y.astype(np.int64))

  return RawData(train=split("train"), validation=split("validation"),
                 test=split("test"), levels=levels, num_classes=num_classes)
