"""Tests of the IDX source (`data.name = "idx:DIR"`) and the binarizations.

The IDX files are written here byte by byte from the format's definition
(big-endian magic number and sizes, then unsigned bytes), independently of
`vib_flows.data.idx.write_idx`, and the binarizations are checked against
their definitions: a fixed Bernoulli draw per split (static), per-epoch draws
of the training split with fixed evaluation splits (dynamic), and the 0.5
threshold.
"""

import gzip
import os
import struct

import numpy as np
import pytest

from tests import helpers
from vib_flows import data
from vib_flows.data import idx

SHAPE = (6, 5)  # Rows, columns: small and not square, to catch a transpose.


def _idx_bytes(array, magic):
  header = struct.pack(">I", magic) + b"".join(
      struct.pack(">I", d) for d in array.shape)
  return header + np.asarray(array, np.uint8).tobytes()


def write_folder(folder, n_train=30, n_test=10, compress=True, seed=0,
                 test_shape=SHAPE):
  """Writes the four IDX files; returns (x_train, y_train, x_test, y_test)."""
  rng = np.random.default_rng(seed)
  arrays = (rng.integers(0, 256, (n_train,) + SHAPE, dtype=np.uint8),
            (np.arange(n_train) % 10).astype(np.uint8),
            rng.integers(0, 256, (n_test,) + test_shape, dtype=np.uint8),
            (np.arange(n_test) % 10).astype(np.uint8))
  stems = (*idx.FILES["train"], *idx.FILES["test"])
  os.makedirs(folder, exist_ok=True)
  for stem, array in zip(stems, arrays):
    content = _idx_bytes(array, 0x0803 if array.ndim == 3 else 0x0801)
    path = os.path.join(folder, stem)
    if compress:
      with gzip.open(path + ".gz", "wb") as f:
        f.write(content)
    else:
      with open(path, "wb") as f:
        f.write(content)
  return arrays


def config_for(folder, **overrides):
  return helpers.config("test", **{"data.name": f"idx:{folder}", **overrides})


@pytest.mark.parametrize("compress", [True, False])
def test_idx_folder_reads_images_labels_and_shape(tmp_path, compress):
  x_train, y_train, x_test, y_test = write_folder(tmp_path, compress=compress)
  raw = idx.load_raw(f"idx:{tmp_path}")
  np.testing.assert_array_equal(raw.train.x[..., 0], x_train)
  np.testing.assert_array_equal(raw.train.y, y_train)
  np.testing.assert_array_equal(raw.test.x[..., 0], x_test)
  np.testing.assert_array_equal(raw.test.y, y_test)
  assert raw.train.x.shape == (30,) + SHAPE + (1,)
  assert raw.levels == 256 and raw.validation is None


def test_idx_splits_for_the_vae_and_the_vib(tmp_path):
  x_train, _, _, _ = write_folder(tmp_path, n_train=30)
  vae = data.load(config_for(tmp_path, **{
      "model.likelihood": "bernoulli", "data.preprocess": "scale",
      "data.validation_size": 8}))
  # The papers' split: validation is the end of the training file.
  assert vae.train.num_examples == 22 and vae.validation.num_examples == 8
  np.testing.assert_allclose(vae.validation.x[..., 0], x_train[22:] / 255.0,
                             rtol=1e-6)
  assert vae.info.input_shape == SHAPE + (1,)
  vib = data.load(config_for(tmp_path, **{"model.kind": "vib",
                                          "data.validation_size": 0}))
  assert vib.train.num_examples == 30 and vib.info.num_classes == 10
  assert vib.validation is vib.test


def _corrupt(folder, stem, mutate):
  path = os.path.join(folder, stem + ".gz")
  with gzip.open(path, "rb") as f:
    content = bytearray(f.read())
  content = mutate(content)
  with gzip.open(path, "wb") as f:
    f.write(bytes(content))
  return path


def _set_word(position, value):
  def mutate(content):
    content[position:position + 4] = struct.pack(">I", value)
    return content
  return mutate


@pytest.mark.parametrize("stem, mutate, words", [
    (idx.FILES["train"][0], _set_word(0, 0x0801), ["magic number 0x00000801",
                                                   "expected 0x00000803"]),
    (idx.FILES["train"][1], _set_word(0, 0x0803), ["magic number 0x00000803",
                                                   "expected 0x00000801"]),
    (idx.FILES["train"][0], lambda c: c[:-7], ["truncated"]),
    (idx.FILES["train"][0], _set_word(4, 31),
     ["header gives shape (31, 6, 5)"]),
    (idx.FILES["test"][1], lambda c: c[:4], ["shorter than its 8-byte header"]),
])
def test_a_wrong_file_is_named_in_one_line(tmp_path, stem, mutate, words):
  write_folder(tmp_path)
  path = _corrupt(tmp_path, stem, mutate)
  with pytest.raises(ValueError) as error:
    data.load(config_for(tmp_path))
  message = str(error.value)
  assert "\n" not in message and path in message
  for word in words:
    assert word in message


def test_label_and_image_counts_and_shapes_must_agree(tmp_path):
  write_folder(tmp_path)
  labels = os.path.join(tmp_path, idx.FILES["train"][1] + ".gz")
  with gzip.open(labels, "wb") as f:
    f.write(_idx_bytes(np.zeros(29, np.uint8), 0x0801))
  with pytest.raises(ValueError, match="29 labels for the 30 images"):
    data.load(config_for(tmp_path))
  other = tmp_path / "other"
  write_folder(other, test_shape=(5, 6))
  with pytest.raises(ValueError, match=r"images of shape \(5, 6\)"):
    data.load(config_for(other))


def test_missing_folder_or_file_is_named(tmp_path):
  with pytest.raises(ValueError, match="IDX folder not found"):
    data.load(config_for(tmp_path / "nowhere"))
  write_folder(tmp_path)
  os.remove(os.path.join(tmp_path, idx.FILES["test"][0] + ".gz"))
  with pytest.raises(ValueError, match="t10k-images-idx3-ubyte .or .gz. not"):
    data.load(config_for(tmp_path))


def test_write_idx_round_trips_through_read_idx(tmp_path):
  images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  path = str(tmp_path / "images.gz")
  idx.write_idx(path, images)
  np.testing.assert_array_equal(idx.read_idx(path, idx.IMAGES_MAGIC, 3),
                                images)
  with gzip.open(path) as f:
    assert f.read() == _idx_bytes(images, 0x0803)


# ------------------------------------------------------------ binarization


def _grey_folder(tmp_path, n=400, grey=77):
  """Every pixel at `grey`/255 (about 0.3): draws are Bernoulli(0.3)."""
  folder = tmp_path / "grey"
  write_folder(folder, n_train=n, n_test=n)
  for stem, count in ((idx.FILES["train"][0], n), (idx.FILES["test"][0], n)):
    with gzip.open(os.path.join(folder, stem + ".gz"), "wb") as f:
      f.write(_idx_bytes(np.full((count,) + SHAPE, grey, np.uint8), 0x0803))
  return folder


def _bernoulli_config(folder, preprocess, **overrides):
  return config_for(folder, **{"model.likelihood": "bernoulli",
                               "data.preprocess": preprocess,
                               "data.validation_size": 100, **overrides})


def test_static_binarization_is_one_seeded_draw_per_split(tmp_path):
  folder = _grey_folder(tmp_path)
  p = 77 / 255
  splits = data.load(_bernoulli_config(folder, "static"))
  for _, split in splits.items():
    assert set(np.unique(split.x)) == {0.0, 1.0}
    # 300-400 images of 30 pixels: the mean is within 0.03 of p (> 6 sd).
    assert abs(split.x.mean() - p) < 0.03
  # A threshold at 0.5 would make every pixel 0.
  again = data.load(_bernoulli_config(folder, "static"))
  for (_, a), (_, b) in zip(splits.items(), again.items()):
    np.testing.assert_array_equal(a.x, b.x)
  # The splits are not copies of one draw; another seed is another draw.
  assert not np.array_equal(splits.train.x[:100], splits.validation.x)
  other = data.load(_bernoulli_config(folder, "static",
                                      **{"data.binarization_seed": 1}))
  assert not np.array_equal(other.test.x, splits.test.x)


def test_threshold_binarization_cuts_at_one_half(tmp_path):
  x_train, _, _, _ = write_folder(tmp_path)
  splits = data.load(_bernoulli_config(tmp_path, "threshold",
                                       **{"data.validation_size": 0}))
  np.testing.assert_array_equal(splits.train.x[..., 0],
                                (x_train / 255.0 > 0.5).astype(np.float32))


def test_dynamic_binarization_draws_evaluation_splits_once(tmp_path):
  folder = _grey_folder(tmp_path)
  p = np.float32(77 / 255)
  splits = data.load(_bernoulli_config(folder, "dynamic"))
  # Training keeps the grey values; the pipeline draws them every epoch.
  np.testing.assert_allclose(splits.train.x, p)
  for split in (splits.validation, splits.test):
    assert set(np.unique(split.x)) == {0.0, 1.0}
    assert abs(split.x.mean() - p) < 0.03
  again = data.load(_bernoulli_config(folder, "dynamic"))
  np.testing.assert_array_equal(again.test.x, splits.test.x)
  np.testing.assert_array_equal(again.validation.x, splits.validation.x)
  epoch = data.make_dataset_fn(splits.train, 50, True, 3,
                               _bernoulli_config(folder, "dynamic"),
                               splits.info)(None)
  first = np.concatenate([b["x"].numpy() for b in epoch])
  second = np.concatenate([b["x"].numpy() for b in epoch])
  assert set(np.unique(first)) == {0.0, 1.0}
  assert abs(first.mean() - p) < 0.03
  assert not np.array_equal(first, second)  # Re-drawn each epoch.
