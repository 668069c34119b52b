"""Multi-sample paths give the flow z0 [S, B, d] with the context [B, C].

The reference is the previous path, written out here: z0 flattened to
[S*B, d] and the context tiled to [S*B, C]. Both must give the same numbers
(to float32 rounding), and the flow must never see a tiled context.
"""

import types

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from vib_flows import models
from vib_flows.app import model_builder
from vib_flows.flows import testing


def tiled_latent_samples(self, loc, scale, context, num_samples, seed,
                         stop_gradient=False, example_index=None,
                         first_sample=0):
  """The flat-and-tiled reference of `_latent_samples`."""
  samples = models.LatentVariableModel._latent_samples(  # pylint: disable=protected-access
      self, loc, scale, context, num_samples, seed, stop_gradient,
      example_index, first_sample)
  z0 = samples["z0"]
  s, b = z0.shape[0], z0.shape[1]
  zk, log_det = self.flow(tf.reshape(z0, [s * b, -1]),
                          context=tf.tile(context, [s, 1]))
  return dict(samples, zk=tf.cast(zk, tf.float32),
              log_det=tf.reshape(tf.cast(log_det, tf.float32), [s, b]))


@pytest.mark.parametrize("kind, flow", [("vae", "sylvester_householder"),
                                        ("vib", "iaf")])
def test_multi_sample_paths_broadcast_the_context(kind, flow):
  config = helpers.small_config(
      kind, flow__name=flow, flow__num_flows=2, flow__amortized=True,
      loss__num_samples=3)
  model = model_builder.build_model(config, helpers.data_info())
  model.build()
  testing.randomize_weights(model.flow, 0.3, seed=0)
  batch = helpers.digits_batch(5)
  x = tf.constant(batch["x"])
  seed = tf.constant([3, 4], tf.int32)
  seen = []
  call = model.flow.call

  def recording_call(z, context=None):
    seen.append((tuple(z.shape), tuple(context.shape)))
    return call(z, context=context)

  model.flow.call = recording_call
  if kind == "vae":
    got = list(model.log_likelihood(x, 7, seed, chunk_size=4))
  else:
    got = [model.predict_proba(x, 7, seed)]
  _, terms = model.per_example_loss(batch, 1.0, seed)
  got += [terms["loss"]]
  assert seen and all(c == (5, 8) and len(z) == 3 for z, c in seen), seen
  model.flow.call = call
  model._latent_samples = types.MethodType(tiled_latent_samples, model)  # pylint: disable=protected-access
  if kind == "vae":
    expected = list(model.log_likelihood(x, 7, seed, chunk_size=4))
  else:
    expected = [model.predict_proba(x, 7, seed)]
  _, terms = model.per_example_loss(batch, 1.0, seed)
  expected += [terms["loss"]]
  for a, b in zip(got, expected):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
