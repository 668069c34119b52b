"""One planar layer of K maps: the same function as K one-map layers.

`flows.make_stack("planar", K)` builds a single `PlanarFlow(num_maps=K)`,
whose weights hold all K maps (u, w [K, d], b [K, 1]). The references: K
one-map layers given the same parameters, and the autodiff Jacobian in
float64.
"""

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from vib_flows import flows
from vib_flows.app import config_checks

CONTEXT_DIM = 3


def _random_layer(num_maps, dim, amortized, seed=0):
  kwargs = {"context_dim": CONTEXT_DIM} if amortized else {}
  layer = flows.get("planar", num_maps=num_maps, dim=dim, dtype="float64",
                    **kwargs)
  rng = np.random.default_rng(seed)
  for w in layer.weights:  # Far from the initialization, w.u < -1 included.
    w.assign(rng.normal(scale=0.7, size=w.shape))
  return layer


def _one_map_layers(layer):
  """K one-map layers holding map k's parameters of `layer`."""
  weights = {w.name: w.numpy() for w in layer.weights}
  num_maps, dim = layer.num_maps, layer.dim
  singles = []
  for k in range(num_maps):
    single = flows.get("planar", dim=dim, dtype="float64",
                       context_dim=layer.context_dim)
    for w in single.weights:
      value = weights[w.name]
      if w.name.endswith("_context_kernel"):  # [C, K * size] -> map k's.
        value = value.reshape(value.shape[0], num_maps, -1)[:, k]
      else:
        value = value[k:k + 1]
      w.assign(value)
    singles.append(single)
  return singles


@pytest.mark.parametrize("amortized", [False, True],
                         ids=["global", "amortized"])
def test_k_maps_are_the_composition_of_k_one_map_layers(amortized):
  layer = _random_layer(3, 4, amortized)
  rng = np.random.default_rng(1)
  z = tf.constant(rng.normal(size=(5, 4)))
  context = (tf.constant(rng.normal(size=(5, CONTEXT_DIM))) if amortized
             else None)
  y, log_det = layer(z, context=context)
  expected_y, expected_log_det = z, 0.0
  for single in _one_map_layers(layer):
    expected_y, single_log_det = single(expected_y, context=context)
    expected_log_det += single_log_det
  np.testing.assert_allclose(y, expected_y, rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(log_det, expected_log_det, rtol=1e-12,
                             atol=1e-12)
  assert np.max(np.abs(log_det)) > 0.1  # Not a trivially equal pair.


@pytest.mark.parametrize("amortized", [False, True],
                         ids=["global", "amortized"])
@pytest.mark.parametrize("dim", [1, 2, 7])
def test_k_maps_log_det_matches_autodiff_jacobian(dim, amortized):
  layer = _random_layer(4, dim, amortized, seed=dim)
  rng = np.random.default_rng(2)
  z = tf.constant(rng.normal(size=(6, dim)))
  context = (tf.constant(rng.normal(size=(6, CONTEXT_DIM))) if amortized
             else None)
  with tf.GradientTape() as tape:
    tape.watch(z)
    y, log_det = layer(z, context=context)
  _, expected = tf.linalg.slogdet(tape.batch_jacobian(y, z))
  np.testing.assert_allclose(log_det, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("amortized", [False, True],
                         ids=["global", "amortized"])
def test_samples_of_each_example_equal_the_flow_on_each_slice(amortized):
  """Slice s of z [S, B, d] with context [B, C] is layer(z[s], context).

  Amortized: also z [B, d] with context [S, B, C] (slice s: layer(z,
  context[s])). One point z [d] (with context [C]) gives a scalar log-det.
  """
  dim = 5  # helpers.check_sample_axis_slices uses z [3, 4, 5].
  layer = _random_layer(3, dim, amortized)
  helpers.check_sample_axis_slices(layer, amortized, CONTEXT_DIM, seed=4)


def test_make_stack_builds_one_layer_of_num_flows_maps():
  stack = flows.make_stack("planar", 8, dim=5)
  assert len(stack) == 1 and stack.flows[0].num_maps == 8
  assert sorted(tuple(w.shape) for w in stack.weights) == [
      (8, 1), (8, 5), (8, 5)]
  assert len(flows.make_stack("planar", 0, dim=5)) == 0
  assert flows.option_names("planar") == []
  with pytest.raises(ValueError, match="number of maps is num_flows"):
    flows.make_stack("planar", 2, dim=5, num_maps=3)
  with pytest.raises(ValueError, match="num_maps must be >= 1"):
    flows.get("planar", num_maps=0)


def test_num_maps_is_not_a_config_option():
  config = helpers.config(flow__name="planar", flow__num_flows=2)
  config.flow.options.num_maps = 4
  with pytest.raises(ValueError, match="its number of maps is num_flows"):
    config_checks.validate(config)
