"""MNIST-style IDX files from a folder (`data.name = "idx:/path/to/folder"`).

The IDX format (LeCun et al., "The MNIST database") is how MNIST,
Fashion-MNIST and KMNIST are distributed: four files, each a big-endian
header followed by unsigned bytes,

    train-images-idx3-ubyte   magic 0x00000803, count N, rows R, columns C,
                              then N * R * C pixels (0..255)
    train-labels-idx1-ubyte   magic 0x00000801, count N, then N labels
    t10k-images-idx3-ubyte    the test images, as above
    t10k-labels-idx1-ubyte    the test labels

each plain or gzip-compressed (the same name with ".gz"). Every header is
checked: the magic number, the counts against the file's length, the image
shape of the test file against the training file's, and the number of images
against the number of labels. A wrong file gives a `ValueError` of one line
that names the file and what is wrong.

The source has no validation split: `data.validation_size` holds out the end
of the training file (10 000 gives the 50 000 / 10 000 / 10 000 split of the
flow papers; 0 trains on all 60 000 images, as Alemi et al. 2017 do).
Images are [N, R, C, 1] uint8 (256 levels), labels int64.
"""

import gzip
import os

import numpy as np

from vib_flows.data.containers import RawData
from vib_flows.data.containers import Split

PREFIX = "idx:"
IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions.
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension.
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def is_idx_name(name):
  """True for data set names of the form "idx:/path/to/folder"."""
  return str(name).startswith(PREFIX)


def folder_from_name(name):
  """The folder of "idx:/path/to/folder" (user ~ expanded)."""
  return os.path.expanduser(str(name)[len(PREFIX):])


def find_file(folder, stem):
  """The path of `stem` or `stem`.gz in `folder`.

  Raises:
    ValueError: neither exists (the message names both).
  """
  for candidate in (stem, stem + ".gz"):
    path = os.path.join(folder, candidate)
    if os.path.isfile(path):
      return path
  raise ValueError(
      f"IDX file {os.path.join(folder, stem)} (or .gz) not found: an IDX "
      f"folder holds {', '.join(s for pair in FILES.values() for s in pair)}.")


def _read_bytes(path):
  """The file's bytes, decompressed when it is gzip (by its magic, not name)."""
  with open(path, "rb") as f:
    content = f.read()
  if content[:2] == b"\x1f\x8b":
    try:
      return gzip.decompress(content)
    except (OSError, EOFError) as error:
      raise ValueError(
          f"IDX file {path}: broken gzip data ({error}).") from error
  return content


def read_idx(path, magic, dims):
  """Reads one IDX file of unsigned bytes and checks its header.

  Args:
    path: the file (plain or gzip).
    magic: the expected magic number (`IMAGES_MAGIC` or `LABELS_MAGIC`).
    dims: the number of dimensions that magic number announces (3 or 1).

  Returns:
    uint8 array of shape given by the header, e.g. [N, 28, 28] or [N].

  Raises:
    ValueError: a short header, another magic number, or a length that does
      not match the header's sizes (one line naming the file).
  """
  content = _read_bytes(path)
  header_size = 4 * (1 + dims)
  if len(content) < header_size:
    raise ValueError(
        f"IDX file {path}: {len(content)} bytes, shorter than its "
        f"{header_size}-byte header.")
  found = int.from_bytes(content[:4], "big")
  if found != magic:
    raise ValueError(
        f"IDX file {path}: magic number 0x{found:08x}, expected "
        f"0x{magic:08x} (unsigned bytes, {dims} dimension"
        f"{'s' if dims > 1 else ''}); is it the right file?")
  shape = tuple(
      int.from_bytes(content[4 * (i + 1):4 * (i + 2)], "big")
      for i in range(dims))
  expected = header_size + int(np.prod(shape, dtype=np.int64))
  if len(content) != expected:
    raise ValueError(
        f"IDX file {path}: the header gives shape {shape}, i.e. "
        f"{expected} bytes, but the file has {len(content)} (truncated or "
        "not an IDX file).")
  return np.frombuffer(content, np.uint8, offset=header_size).reshape(shape)


def read_split(folder, split):
  """The images [N, R, C, 1] uint8 and labels [N] int64 of `split`.

  Raises:
    ValueError: a missing or wrong file, or image and label counts that
      differ.
  """
  image_path, label_path = (find_file(folder, stem) for stem in FILES[split])
  images = read_idx(image_path, IMAGES_MAGIC, 3)
  labels = read_idx(label_path, LABELS_MAGIC, 1)
  if images.shape[0] != labels.shape[0]:
    raise ValueError(
        f"IDX file {label_path}: {labels.shape[0]} labels for the "
        f"{images.shape[0]} images of {image_path}.")
  if not images.shape[0]:
    raise ValueError(f"IDX file {image_path}: holds no images.")
  return images[..., np.newaxis], labels.astype(np.int64)


def load_raw(name):
  """Loads "idx:/path/to/folder" as raw arrays.

  Returns:
    A `RawData`: train and test splits as stored (uint8 images
    [N, R, C, 1], int64 labels), no validation split, 256 levels,
    `num_classes` None (inferred by `load` from the training labels).

  Raises:
    ValueError: the folder does not exist; a file is missing or wrong; the
      test images have another shape than the training images.
  """
  folder = folder_from_name(name)
  if not folder:
    raise ValueError(
        'data.name "idx:" names no folder; use "idx:/path/to/folder".')
  if not os.path.isdir(folder):
    raise ValueError(f"IDX folder not found: {folder!r} (from data.name).")
  x_train, y_train = read_split(folder, "train")
  x_test, y_test = read_split(folder, "test")
  if x_test.shape[1:] != x_train.shape[1:]:
    raise ValueError(
        f"IDX file {find_file(folder, FILES['test'][0])}: images of shape "
        f"{x_test.shape[1:3]}, the training images are {x_train.shape[1:3]}.")
  return RawData(train=Split(x_train, y_train), validation=None,
                 test=Split(x_test, y_test), levels=256, num_classes=None)


def write_idx(path, array):
  """Writes a uint8 array as an IDX file (gzip when `path` ends in .gz).

  The inverse of `read_idx`: magic 0x0803 for 3-D arrays (images [N, R, C]),
  0x0801 for 1-D (labels [N]). Used by tests and to make small data sets.
  """
  array = np.asarray(array, np.uint8)
  magic = {3: IMAGES_MAGIC, 1: LABELS_MAGIC}.get(array.ndim)
  if magic is None:
    raise ValueError(f"write_idx writes 1-D or 3-D arrays, got {array.shape}.")
  header = magic.to_bytes(4, "big") + b"".join(
      int(d).to_bytes(4, "big") for d in array.shape)
  content = header + array.tobytes()
  if path.endswith(".gz"):
    content = gzip.compress(content)
  with open(path, "wb") as f:
    f.write(content)
