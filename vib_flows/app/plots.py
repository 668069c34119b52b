"""PNG pictures of a run: reconstructions, prior samples, the information plane.

Written atomically (temporary file, then rename) with matplotlib's Agg backend.
"""

from collections.abc import Sequence
import math
import os
import tempfile
from typing import Any
import weakref

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

_PICTURE_SEED = (7, 7)


def as_images(x: np.ndarray, info: Any) -> np.ndarray | None:
  """Reshapes [N, *input_shape] data to [N, H, W] grey images in [0, 1].

  Returns None for data that are not images (a flat size that is not square).
  """
  x = np.asarray(x, np.float32)
  shape = tuple(info.input_shape)
  if len(shape) == 1:
    side = int(round(math.sqrt(shape[0])))
    if side * side != shape[0]:
      return None
    x = x.reshape((-1, side, side))
  elif len(shape) == 3 and shape[-1] == 1:
    x = x[..., 0]
  elif len(shape) != 2:
    return None
  if info.preprocess == "levels" and info.num_levels:
    x = x / float(info.num_levels - 1)
  return np.clip(x, 0.0, 1.0)


def _save_figure(fig, path):
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".png")
  os.close(fd)
  try:
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    os.replace(tmp, path)
  finally:
    plt.close(fig)
    if os.path.exists(tmp):
      os.remove(tmp)


def save_image_grid(images: np.ndarray, path: str, title: str | None = None,
                    columns: int = 10) -> None:
  """Saves [N, H, W] images in [0, 1] as a grid PNG at `path`."""
  n = images.shape[0]
  rows = int(math.ceil(n / columns))
  fig, axes = plt.subplots(rows, columns, figsize=(columns, rows + 0.4),
                           squeeze=False)
  for i, ax in enumerate(axes.flat):
    ax.axis("off")
    if i < n:
      ax.imshow(images[i], cmap="gray", vmin=0.0, vmax=1.0)
  if title:
    fig.suptitle(title)
  _save_figure(fig, path)


_PICTURE_FUNCTIONS: "weakref.WeakKeyDictionary[Any, dict[int, Any]]" = (
    weakref.WeakKeyDictionary())


def _picture_function(model: Any, num: int) -> Any:
  """(x [num, ...], seed) -> (reconstructions, 2 num prior samples), traced.

  For a model with `models_inputs` (`decode`, `sample`).

  Made once per model and `num`: the trainer draws pictures every few
  epochs, and the model's three calls run eagerly would cost more each time
  (docs/performance.md). The model is reached through a weak reference, so
  the cache does not keep it alive.
  """
  per_model = _PICTURE_FUNCTIONS.setdefault(model, {})
  if num not in per_model:
    model_ref = weakref.ref(model)

    @tf.function(autograph=False)
    def pictures(x, seed):
      generative = model_ref()
      recon = generative.decode(generative.encode(x, seed)["z"])
      return recon, generative.sample(2 * num, seed)

    per_model[num] = pictures
  return per_model[num]


def reconstructions_and_samples(
    model: Any, x: np.ndarray, info: Any, num: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
  """Returns (originals, reconstructions, prior samples) images, or None."""
  seed = tf.constant(_PICTURE_SEED, tf.int32)
  originals = as_images(x[:num], info)
  if originals is None:
    return None
  recon, samples = _picture_function(model, num)(
      tf.constant(x[:num], tf.float32), seed)
  return originals, as_images(recon, info), as_images(samples, info)


def save_run_pictures(model: Any, splits: Any, config: Any,
                      workdir: str) -> None:
  """Writes reconstructions.png and samples.png of a model of x on images.

  Only for a model with a likelihood of x (`models_inputs`: it decodes and
  samples, e.g. the VAE) and data that are images (`as_images`).
  """
  del config
  if not model.models_inputs:
    return
  pictures = reconstructions_and_samples(model, splits.test.x, splits.info)
  if pictures is None:
    return
  originals, recon, samples = pictures
  save_image_grid(
      np.concatenate([originals, recon]),
      os.path.join(workdir, "reconstructions.png"),
      "test images (top) and reconstructions (bottom)",
  )
  save_image_grid(samples, os.path.join(workdir, "samples.png"),
                  "samples from the prior (decoder means)")


def save_information_plane(points: Sequence[dict[str, Any]], path: str,
                           levels: dict[str, float] | None = None) -> None:
  """Plots I(Z;X) upper bound against I(Z;Y) lower bound for a beta sweep.

  Args:
    points: list of dicts with keys "beta", "izx", "izy" (nats) and optional
      "label" (e.g. the flow).
    path: PNG path.
    levels: optional {label: I(Z;Y) value} drawn as dashed horizontal lines
      (e.g. H(Y), the ceiling of I(Z;Y), or a deterministic baseline's
      H(Y) - CE).
  """
  fig, ax = plt.subplots(figsize=(5, 4))
  labels = sorted({p.get("label", "") for p in points})
  for label in labels:
    group = sorted((p for p in points if p.get("label", "") == label),
                   key=lambda p: p["beta"])
    ax.plot([p["izx"] for p in group], [p["izy"] for p in group], "o-",
            label=label or None)
    for p in group:
      ax.annotate(f"{p['beta']:g}", (p["izx"], p["izy"]), fontsize=7)
  ax.set_xscale("symlog", linthresh=1.0)
  xlim = ax.get_xlim()  # Of the points; the lines below span whatever it is.
  for (label, value), color in zip(sorted((levels or {}).items()),
                                   ("gray", "black", "purple")):
    ax.axhline(value, linestyle="--", linewidth=1, color=color, label=label)
  ax.set_xlim(xlim)
  ax.set_xlabel("I(Z;X) upper bound: E[KL] (nats)")
  ax.set_ylabel("I(Z;Y) lower bound: H(Y) - CE (nats)")
  ax.set_title("VIB information plane (labels: beta)")
  if any(labels) or levels:
    ax.legend(fontsize=8)
  _save_figure(fig, path)


def y_limits(curves: Sequence[dict[str, Any]], from_x: float,
             margin: float = 0.05) -> tuple[float, float] | None:
  """The y range of falling curves from x = from_x on.

  From the lowest value of every seed of every curve where x >= from_x to
  the highest at the first such x (training curves fall from there; a later
  spike, such as a run that diverges, is drawn past the top instead of
  squeezing the others flat), widened by `margin` of the range on each side;
  None when no point has x >= from_x.
  """
  lows, highs = [], []
  for curve in curves:
    y = np.atleast_2d(np.asarray(curve["y"], np.float64))
    later = np.asarray(curve["x"], np.float64) >= from_x
    if later.any():
      lows.append(y[:, later].min())
      highs.append(y[:, np.argmax(later)].max())
  if not lows:
    return None
  low, high = min(lows), max(highs)
  pad = margin * (high - low) if high > low else 1.0
  return low - pad, high + pad


def save_curves(curves: Sequence[dict[str, Any]], path: str, title: str,
                xlabel: str, ylabel: str, log_x: bool = False,
                y_from_x: float | None = None) -> None:
  """Line plot of several labelled curves, each the mean over seeds.

  Args:
    curves: dicts with "label", "x" (1-D) and "y" ([seeds, len(x)] or 1-D;
      several seeds are drawn as their mean with a band from the lowest to
      the highest seed), optionally "color" and "linestyle" (matplotlib's).
    path: PNG path.
    title: the figure's title.
    xlabel: the x axis' label.
    ylabel: the y axis' label.
    log_x: a symmetric-log x axis.
    y_from_x: the y axis spans the curves where x >= y_from_x (`y_limits`;
      e.g. the epochs after a training curve's first steep fall); a curve
      that leaves it at the top says so in its label.
  """
  limits = None if y_from_x is None else y_limits(curves, y_from_x)
  fig, ax = plt.subplots(figsize=(6, 4))
  for curve in curves:
    y = np.atleast_2d(np.asarray(curve["y"], np.float64))
    x = np.asarray(curve["x"], np.float64)
    label = curve["label"]
    if limits is not None and np.any(y[:, x >= y_from_x] > limits[1]):
      label += " (leaves the axis)"
    line, = ax.plot(x, y.mean(axis=0), label=label, linewidth=1.2,
                    color=curve.get("color"),
                    linestyle=curve.get("linestyle", "-"))
    if y.shape[0] > 1:
      ax.fill_between(x, y.min(axis=0), y.max(axis=0), alpha=0.2,
                      color=line.get_color())
  if log_x:
    ax.set_xscale("symlog", linthresh=1.0)
  if limits is not None:
    ax.set_ylim(*limits)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  _save_figure(fig, path)
