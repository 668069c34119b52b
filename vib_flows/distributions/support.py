"""Numpy checks that data lie in a likelihood's support (before training).

The likelihood layers' `validate` methods and the models' batch checks call
these; `vib_flows.data.validation` checks whole data sets, naming the split.
Each raises ValueError naming the problem and the values found.
"""

import numpy as np


def check_finite(x: np.ndarray, what: str) -> None:
  """Raises ValueError if x has NaN or infinite values (`what`: x's name)."""
  if not np.all(np.isfinite(x)):
    bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
    raise ValueError(f"{what}: {bad} values are NaN or infinite.")


def check_unit_interval(x: np.ndarray, what: str) -> None:
  """Raises ValueError unless x is finite and in [0, 1] (`what` needs it)."""
  x = np.asarray(x)
  check_finite(x, f"{what} data")
  if x.size and (x.min() < 0 or x.max() > 1):
    raise ValueError(
        f"{what} needs data in [0, 1]; got values in "
        f"[{x.min()}, {x.max()}]."
    )


def check_levels(x: np.ndarray, num_levels: int) -> None:
  """Raises ValueError unless x holds integer levels 0..num_levels-1."""
  x = np.asarray(x)
  check_finite(x, "categorical likelihood data")
  if x.size == 0:
    return
  if x.min() < 0 or x.max() > num_levels - 1:
    raise ValueError(
        "categorical likelihood needs integer levels in "
        f"0..{num_levels - 1}"
        f" (model.num_levels={num_levels}); got values in "
        f"[{x.min()}, {x.max()}]."
    )
  if np.any(x != np.round(x)):
    raise ValueError(
        "categorical likelihood needs integer levels; got non-integer values"
        f" such as {x[x != np.round(x)].flat[0]}."
    )


def validate_labels(y: np.ndarray, num_classes: int) -> None:
  """Raises ValueError unless every label is an integer in 0..num_classes-1."""
  y = np.asarray(y)
  if y.size == 0:
    return
  if y.dtype.kind == "f":
    check_finite(y, "labels")
    if np.any(y != np.round(y)):
      raise ValueError("labels must be integers; got non-integer values.")
  if y.min() < 0 or y.max() > num_classes - 1:
    raise ValueError(
        f"labels must be in 0..{num_classes - 1} (num_classes={num_classes});"
        f" got values in [{y.min()}, {y.max()}]."
    )
