"""In-memory containers of the data sources: Split, DataInfo, DataSplits."""

from collections.abc import Callable
import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
  """One split of a data set, held in memory.

  Attributes:
    x: float32 [N, *input_shape], in the representation named by
      `DataInfo.preprocess` (raw arrays of any numeric dtype inside a source,
      before `load` converts them).
    y: int64 [N] class labels in 0..num_classes-1, or None (no labels).
    sampler: for sources that can draw new examples (the synthetic data),
      `sampler(num_examples, seed) -> float32 [num_examples, *input_shape]`,
      a fresh draw for a stateless int seed tensor [2], in the representation
      of `x`; the training pipeline then draws a new set per epoch instead of
      reading `x`. None: the examples are `x`.
  """

  x: np.ndarray
  y: np.ndarray | None = None
  sampler: Callable | None = None

  @property
  def num_examples(self):
    """N, the number of examples (rows of `x`)."""
    return int(np.shape(self.x)[0]) if np.ndim(self.x) else 0


@dataclasses.dataclass(frozen=True)
class DataInfo:
  """What the model needs to know about the data.

  Attributes:
    name: `config.data.name` as given ("digits", "npz:/path.npz", a TFDS name).
    input_shape: shape of one example, e.g. (64,) for the 8x8 digits or
      (28, 28, 1) for MNIST.
    num_classes: number of label classes (labels are 0..num_classes-1), or None
      when the data set has no labels.
    num_levels: number of intensity levels when `preprocess == "levels"`
      (x holds integers 0..num_levels-1), else None.
    preprocess: the resolved representation, never "auto": "levels" (integer
      intensities as float32), "scale" ([0, 1] grey values), "static" (binary
      {0, 1}, one fixed Bernoulli draw), "threshold" (binary, grey values
      thresholded at 0.5) or "dynamic" (training split: [0, 1] grey values,
      the input pipeline draws binary x ~ Bernoulli(grey value) each epoch;
      validation and test: one fixed draw).
  """

  name: str
  input_shape: tuple
  num_classes: int | None
  num_levels: int | None
  preprocess: str


@dataclasses.dataclass(frozen=True, eq=False)
class DataSplits:
  """The three splits and their `DataInfo`, as `vib_flows.data.load` returns.

  Attributes:
    train: the examples the model is fitted on.
    validation: examples for model selection and early stopping (for npz/TFDS
      without a validation split and `data.validation_size == 0`, the same
      arrays as `test`).
    test: held-out examples for the final metrics.
    info: shapes, classes, levels and representation of the three splits.
    exact_log_likelihood: for data from a known model (the synthetic data),
      `fn(x [N, *input_shape]) -> float64 [N]`, the exact log p(x) in nats;
      None for real data.
  """

  train: Split
  validation: Split
  test: Split
  info: DataInfo
  exact_log_likelihood: Callable | None = None

  def items(self):
    """Returns [("train", split), ("validation", split), ("test", split)]."""
    return [("train", self.train), ("validation", self.validation),
            ("test", self.test)]


@dataclasses.dataclass(frozen=True, eq=False)
class RawData:
  """A source's arrays before conversion to the likelihood's representation.

  Attributes:
    train, validation, test: raw splits; `validation` is None when the source
      has no validation split (then `load` holds out `data.validation_size`
      examples from the end of train, or uses the test split).
    levels: the source's intensity levels R when x holds integers 0..R-1
      (17 for the digits, 256 for 8-bit images, 2 for binary images), or None
      when x holds float values already scaled to [0, 1].
    num_classes: number of classes of the labels if the source knows it (a TFDS
      ClassLabel, the digits), else None (inferred from the train labels).
  """

  train: Split
  validation: Split | None
  test: Split
  levels: int | None
  num_classes: int | None
