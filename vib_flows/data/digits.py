"""scikit-learn's bundled 8x8 digits (no download), split as in Tomczak's book.

The split follows the code of J. M. Tomczak, "Deep Generative Modeling"
(Springer, 2022; github.com/jmtomczak/intro_dgm): in `load_digits` order, the
first 1000 examples are the training set, the next 350 the validation set and
the remaining 447 the test set. Pixels are integers 0..16, i.e. 17 levels.
"""

import numpy as np
from sklearn import datasets

from vib_flows.data.containers import RawData
from vib_flows.data.containers import Split

NAME = "digits"
NUM_TRAIN = 1000
NUM_VALIDATION = 350
NUM_TEST = 447  # 1797 - 1000 - 350.
NUM_LEVELS = 17  # Pixel values 0..16.
NUM_CLASSES = 10
IMAGE_SHAPE = (8, 8)


def load_arrays():
  """Returns (x, y): float64 [1797, 64] pixels 0..16 and int64 [1797] labels."""
  x, y = datasets.load_digits(return_X_y=True)
  return x, y.astype(np.int64)


def split_indices():
  """Returns the (train, validation, test) slices of the book's split."""
  end_train = NUM_TRAIN
  end_validation = NUM_TRAIN + NUM_VALIDATION
  return (slice(0, end_train), slice(end_train, end_validation),
          slice(end_validation, None))


def load_raw():
  """Loads the digits as raw integer intensities.

  Returns:
    A `RawData` with x [N, 64] (integers 0..16, row-major 8x8 images) and int64
    labels 0..9: train N=1000, validation N=350, test N=447, `levels=17`.
  """
  x, y = load_arrays()
  train, validation, test = (Split(x[s], y[s]) for s in split_indices())
  return RawData(train=train, validation=validation, test=test,
                 levels=NUM_LEVELS, num_classes=NUM_CLASSES)
