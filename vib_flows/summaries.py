"""TensorBoard summaries: per-epoch scalars, and images for image data."""

import os

import numpy as np
import tensorflow as tf

from vib_flows import plots


def make_writer(workdir, is_chief):
  """Summary writer in DIR/tensorboard on the chief, a no-op elsewhere."""
  if not is_chief:
    return tf.summary.create_noop_writer()
  return tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))


def write_epoch(writer, step, train_metrics, val_metrics, model, splits, config,
                images=True):
  """Writes train/* and validation/* scalars at `step`.

  Also VAE pictures if `images`.

  The pictures cost a pass of the model and a PNG encoding: the trainer asks
  for them every `train.image_summaries_every_epochs` epochs.
  """
  with writer.as_default(step=step):
    for prefix, metrics in (("train", train_metrics),
                            ("validation", val_metrics)):
      for name, value in metrics.items():
        tf.summary.scalar(f"{prefix}/{name}", value)
    if images and config.model.kind == "vae":
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
