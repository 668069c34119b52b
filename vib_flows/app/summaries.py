"""TensorBoard summaries: per-epoch scalars, and images for image data."""

import os
import weakref

import numpy as np
import tensorflow as tf

from vib_flows.app import plots


def make_writer(workdir, is_chief):
  """Summary writer in DIR/tensorboard on the chief, a no-op elsewhere."""
  if not is_chief:
    return tf.summary.create_noop_writer()
  return tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))


_SCALAR_WRITERS = weakref.WeakKeyDictionary()


def _write_scalars(writer, scalars, step):
  """Writes {tag: float} at `step` in one tf.function call.

  One call per epoch rather than one eager write per scalar, whose costs add
  up against a small model's epoch (docs/performance.md). The function is
  made once per writer and set of tags; the values arrive as one float32
  tensor, so nothing is retraced.
  """
  tags = tuple(sorted(scalars))
  per_writer = _SCALAR_WRITERS.setdefault(writer, {})
  if tags not in per_writer:
    @tf.function(autograph=False)
    def write(values, step):
      with writer.as_default(step=step):
        for i, tag in enumerate(tags):
          tf.summary.scalar(tag, values[i])

    per_writer[tags] = write
  per_writer[tags](tf.constant([scalars[t] for t in tags], tf.float32),
                   tf.constant(step, tf.int64))


def write_epoch(writer, step, train_metrics, val_metrics, model, splits, config,
                images=True):
  """Writes train/* and validation/* scalars at `step`.

  Also pictures if `images`, of a model with a likelihood of x
  (`models_inputs`, e.g. the VAE) on image data.

  The pictures cost a pass of the model and a PNG encoding: the trainer asks
  for them every `train.image_summaries_every_epochs` epochs.
  """
  del config  # The model says whether it makes pictures.
  scalars = {f"{prefix}/{name}": value
             for prefix, metrics in (("train", train_metrics),
                                     ("validation", val_metrics))
             for name, value in metrics.items()}
  _write_scalars(writer, scalars, step)
  with writer.as_default(step=step):
    if images and model.models_inputs:
      pictures = plots.reconstructions_and_samples(
          model, splits.validation.x, splits.info, num=8
      )
      if pictures is not None:
        originals, recon, samples = pictures
        tf.summary.image(
            "reconstructions",
            np.concatenate([originals, recon], axis=2)[..., None], max_outputs=8
        )
        tf.summary.image("samples", samples[..., None], max_outputs=8)
  writer.flush()
