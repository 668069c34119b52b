"""The contract every registered flow must satisfy, through `flows.testing`.

Mixed precision is checked in test_mixed_precision.py, the TFP bijector in
test_bijector.py, other Keras backends in tests/test_backends.py.

The references are independent of the flow code (see vib_flows/flows/
testing.py): the log-det is compared with log|det| of the autodiff Jacobian
(`numpy.linalg.slogdet`) in float64, the inverse with a round trip, every
leading shape with slice-by-slice application, broadcast contexts with
explicitly broadcast ones, serialization with a reload.
"""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import user_flow
from vib_flows import flows
from vib_flows.flows import testing

CONTEXT_DIM = 3
NAMES = [n for n in flows.names()
         if flows.get_class(n).__module__.startswith("vib_flows.")]
INVERTIBLE = [n for n in NAMES if flows.registry.get_class(n).invertible]
NOT_INVERTIBLE = [n for n in NAMES if n not in INVERTIBLE]
AMORTIZED = pytest.mark.parametrize("amortized", [False, True],
                                    ids=["global", "amortized"])


def make_flow(name, dim, amortized, dtype="float64", seed=0, scale=0.7):
  """A built flow whose trainable weights are random, far from their init.

  The random values include raw parameters that would break invertibility
  without the constraints (e.g. planar w.u < -1), so the test checks the
  constrained parameterization, not a lucky initialization.
  """
  kwargs = {"context_dim": CONTEXT_DIM} if amortized else {}
  layer = flows.get(name, dim=dim, dtype=dtype, **kwargs)
  testing.randomize_weights(layer, scale, seed)
  return layer


def test_registry_has_the_contract_names():
  expected = {
      "planar", "radial", "sylvester_orthogonal", "sylvester_householder",
      "sylvester_triangular", "iaf", "maf", "real_nvp", "spline",
  }
  assert expected <= set(NAMES)


def test_unknown_name_lists_valid_names():
  with pytest.raises(ValueError, match="Unknown flow name 'nope'.*planar"):
    flows.get("nope")


@pytest.mark.parametrize("rank", [1, 2, 3, 4])
@AMORTIZED
@pytest.mark.parametrize("name", NAMES)
def test_log_det_and_inverse_at_every_rank(name, amortized, rank):
  dim = 2 if rank == 4 else 3
  layer = make_flow(name, dim, amortized)
  z, context = testing.random_inputs(
      dim, testing.LEADING_SHAPES[rank], CONTEXT_DIM if amortized else None)
  testing.check_log_det(layer, z, context)
  if layer.invertible:
    testing.check_inverse(layer, z, context)
  # The transform is not the identity: the checks would catch a no-op flow.
  y, _ = layer(z, context=context)
  assert np.max(np.abs(testing.to_numpy(y) - testing.to_numpy(z))) > 1e-3


@pytest.mark.parametrize("dim", [1, 7])
@AMORTIZED
@pytest.mark.parametrize("name", NAMES)
def test_log_det_and_inverse_at_other_sizes(name, amortized, dim):
  layer = make_flow(name, dim, amortized)
  z, context = testing.random_inputs(dim, (4,),
                                     CONTEXT_DIM if amortized else None)
  testing.check_log_det(layer, z, context)
  if layer.invertible:
    testing.check_inverse(layer, z, context)


@AMORTIZED
@pytest.mark.parametrize("name", NAMES)
def test_leading_shapes_equal_slice_by_slice(name, amortized):
  layer = make_flow(name, 3, amortized)
  testing.check_leading_shapes(layer, 3, CONTEXT_DIM if amortized else None)


@pytest.mark.parametrize("name", NAMES)
def test_context_broadcasts_and_bad_shapes_are_refused(name):
  layer = make_flow(name, 3, amortized=True)
  testing.check_context_broadcasting(layer, 3, CONTEXT_DIM)


@pytest.mark.parametrize("name", NAMES)
def test_amortized_flow_differs_per_example(name):
  testing.check_amortized(make_flow(name, 3, amortized=True), 3, CONTEXT_DIM)


def test_global_flow_ignores_the_context():
  layer = make_flow("planar", 3, amortized=False)
  z, context = testing.random_inputs(3, (2, 4), CONTEXT_DIM, (5,))
  for a, b in zip(layer(z, context=context), layer(z)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", NOT_INVERTIBLE)
def test_no_analytic_inverse_raises_naming_the_flow(name):
  layer = make_flow(name, 2, amortized=False)
  with pytest.raises(NotImplementedError, match=name):
    layer.inverse(tf.zeros((1, 2), tf.float64))


@AMORTIZED
@pytest.mark.parametrize("name", NAMES)
def test_config_and_keras_file_round_trips(name, amortized, tmp_path):
  context_dim = CONTEXT_DIM if amortized else None
  layer = make_flow(name, 4, amortized, dtype="float32")
  z, context = testing.random_inputs(4, (2, 3), context_dim, (3,), "float32")
  testing.check_config_round_trip(layer, z, context)
  testing.check_keras_saving(layer, 4, context_dim, str(tmp_path))


@pytest.mark.parametrize("name", NAMES)
def test_functional_model_with_flow_stack_saves_and_reloads(name, tmp_path):
  dim = 3
  z_in = keras.Input((dim,), name="z")
  c_in = keras.Input((CONTEXT_DIM,), name="context")
  stack = flows.FlowStack([
      flows.get(name, context_dim=CONTEXT_DIM),
      flows.get(name),
  ])
  z_out, log_det = stack(z_in, context=c_in)
  model = keras.Model([z_in, c_in], [z_out, log_det])
  testing.randomize_weights(model, 0.5, seed=3)
  z, context = testing.random_inputs(dim, (6,), CONTEXT_DIM, dtype="float32")
  expected = model([z, context])
  path = str(tmp_path / "model.keras")
  model.save(path)
  reloaded = keras.models.load_model(path)
  got = reloaded([z, context])
  for a, b in zip(got, expected):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("name", NAMES)
def test_float32_agrees_with_float64(name):
  layer64 = make_flow(name, 5, amortized=True)
  layer32 = flows.get(name, dim=5, context_dim=CONTEXT_DIM, dtype="float32")
  layer32.set_weights([w.astype("float32") for w in layer64.get_weights()])
  # z [S, B, d] with context [B, C]: the broadcast path in both dtypes.
  z, context = testing.random_inputs(5, (2, 4), CONTEXT_DIM, (4,))
  y64, ld64 = layer64(z, context=context)
  y32, ld32 = layer32(tf.cast(z, tf.float32),
                      context=tf.cast(context, tf.float32))
  assert y32.dtype == tf.float32 and ld32.dtype == tf.float32
  np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(ld32, ld64, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["iaf", "planar", "real_nvp"])
def test_stacks_pass_the_contract(name):
  # make_stack puts Reverse layers between autoregressive/coupling layers.
  # Weights of scale 0.3: two spline layers at 0.5 already contract some
  # points by e^-37, where float64 round trips lose six digits.
  factory = functools.partial(flows.make_stack, name, 2)
  testing.check_flow(factory, 3, ranks=(1, 3), weight_scale=0.3)
  testing.check_flow(factory, 3, CONTEXT_DIM, ranks=(1, 3), weight_scale=0.3,
                     saving=False)


def test_flow_stack_sums_log_dets_and_inverts():
  layers = [make_flow(n, 3, False, seed=i) for i, n in enumerate(INVERTIBLE)]
  stack = flows.FlowStack(layers)
  z, _ = testing.random_inputs(3, (2, 4))
  y, log_det = stack(z)
  expected_y, expected_log_det = z, 0.0
  for layer in layers:
    expected_y, ld = layer(expected_y)
    expected_log_det += ld
  np.testing.assert_allclose(y, expected_y)
  np.testing.assert_allclose(log_det, expected_log_det)
  z_back, log_det_inverse = stack.inverse(y)
  np.testing.assert_allclose(z_back, z, atol=1e-8)
  np.testing.assert_allclose(log_det_inverse, -log_det, atol=1e-8)
  with pytest.raises(NotImplementedError, match="planar"):
    flows.FlowStack([flows.get("planar")]).inverse(z)


@pytest.mark.parametrize("leading", [(), (4,), (2, 4)])
def test_empty_stack_is_identity(leading):
  z, _ = testing.random_inputs(3, leading, dtype="float32")
  y, log_det = flows.FlowStack([])(z)
  np.testing.assert_array_equal(y, z)
  np.testing.assert_array_equal(log_det, np.zeros(leading))


def test_bad_shapes_are_refused_naming_them():
  layer = flows.get("planar", dim=3)
  with pytest.raises(ValueError, match=r"scalar"):
    layer(tf.zeros(()))
  with pytest.raises(ValueError, match=r"\(2, 4\)"):
    layer(tf.zeros((2, 4)))


# ------------------------------------------------- users' flows and testing
@pytest.mark.parametrize("context_dim", [None, 2], ids=["global", "amortized"])
def test_user_flow_passes_flows_testing(context_dim):
  testing.check_flow(user_flow.UserScale, 3, context_dim)


class WrongSign(user_flow.UserScale):
  """UserScale returning -log|det|: the mistake flows.testing must catch."""

  def forward_and_log_det(self, z, context):
    y, log_det = super().forward_and_log_det(z, context)
    return y, -log_det


class BatchCentred(user_flow.UserScale):
  """Subtracts the batch mean: every point's output depends on the others."""

  def forward_and_log_det(self, z, context):
    y, log_det = super().forward_and_log_det(z, context)
    if len(y.shape) == 1:  # A single point has no batch to centre.
      return y, log_det
    return y - keras.ops.mean(y, axis=0, keepdims=True), log_det


class WrongInverse(user_flow.UserScale):
  """Its inverse forgets the scale."""

  def inverse_and_log_det(self, y, context):
    _, log_det = super().inverse_and_log_det(y, context)
    return y, log_det


class TiledContextOnly(user_flow.UserScale):
  """Accepts only a context of z's leading shape (no broadcasting)."""

  def forward_and_log_det(self, z, context):
    if context is not None and tuple(context.shape[:-1]) != tuple(
        z.shape[:-1]):
      raise ValueError("context must have z's leading shape")
    return super().forward_and_log_det(z, context)


@pytest.mark.parametrize("flow_class, context_dim, message", [
    (WrongSign, None, "log_det differs from log.det. of the autodiff"),
    (BatchCentred, None, "depends on other points"),
    (WrongInverse, None, r"inverse\(forward\(z\)\) != z"),
    (TiledContextOnly, 2, "context must have z's leading shape"),
], ids=["wrong_sign", "batch_centred", "wrong_inverse", "no_broadcasting"])
def test_wrong_user_flows_fail_flows_testing(flow_class, context_dim,
                                             message):
  with pytest.raises((AssertionError, ValueError), match=message):
    testing.check_flow(flow_class, 3, context_dim, saving=False)
