"""A local TensorFlow Datasets builder over scikit-learn's 8x8 digits.

Importing this module registers the TFDS name "vib_flows_digits", so
`tfds.load("vib_flows_digits", data_dir=...)` (and `data.name =
"vib_flows_digits"`) builds the data set offline from the copy of the digits
bundled with scikit-learn, in well under a second. It exists to exercise the
TFDS code path for real (no download, no mocking) and as a template for a
builder over one's own data.

Splits: "train" (1000), "validation" (350), "test" (447): the split of
Tomczak's "Deep Generative Modeling" book code, see `vib_flows.data.digits`;
the examples keep their `load_digits` order (shuffling is disabled).
Features: "image" uint8 [8, 8, 1] with pixel values 0..16 and "label" (10
classes). Because the pixels are not 8-bit intensities, the builder records
`metadata["num_levels"] = 17`, which `vib_flows.data.tfds_source` reads.
"""

import pathlib

import numpy as np
import tensorflow_datasets as tfds

from vib_flows.data import digits

NAME = "vib_flows_digits"


class VibFlowsDigits(tfds.core.GeneratorBasedBuilder):
  """The sklearn 8x8 digits as a TFDS data set (name "vib_flows_digits")."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "The 1797 digits, split 1000/350/447 (Tomczak)."}

  # TFDS locates a builder's source file (for its checksums file) through
  # `importlib_resources`, a package TFDS 4.9 does not declare as a dependency;
  # naming the file here avoids that import.
  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    return pathlib.Path(__file__)

  def _info(self):
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(
                shape=digits.IMAGE_SHAPE + (1,), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=digits.NUM_CLASSES),
        }),
        supervised_keys=("image", "label"),
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(num_levels=digits.NUM_LEVELS),
        homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: the data ship with scikit-learn.
    x, y = digits.load_arrays()
    images = x.reshape((-1,) + digits.IMAGE_SHAPE + (1,)).astype(np.uint8)
    train, validation, test = digits.split_indices()
    return {
        "train": self._generate_examples(images[train], y[train]),
        "validation": self._generate_examples(
            images[validation], y[validation]),
        "test": self._generate_examples(images[test], y[test]),
    }

  def _generate_examples(self, images, labels):
    # TFDS consumes one example at a time; keys keep the load_digits order.
    for key, (image, label) in enumerate(zip(images, labels)):
      yield key, {"image": image, "label": int(label)}
