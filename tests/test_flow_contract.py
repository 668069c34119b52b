"""The contract every registered flow must satisfy (see docs/design.md).

Mixed precision is checked in test_flow_mixed_precision.py.

The references are independent of the flow code: the log-det is compared with
log|det| of the autodiff Jacobian (`batch_jacobian` + `slogdet`) in float64, the
inverse with a round trip, serialization with a reload, the bijector with the
change-of-variables formula written out here.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from vib_flows import flows

tfd = tfp.distributions

CONTEXT_DIM = 3
NAMES = flows.names()
INVERTIBLE = [n for n in NAMES if flows.registry.get_class(n).invertible]
NOT_INVERTIBLE = [n for n in NAMES if n not in INVERTIBLE]


def make_flow(name, dim, amortized, dtype="float64", seed=0, scale=0.7):
  """A built flow whose trainable weights are random, far from their init.

  The random values include raw parameters that would break invertibility
  without the constraints (e.g. planar w.u < -1), so the test checks the
  constrained parameterization, not a lucky initialization.
  """
  kwargs = {"context_dim": CONTEXT_DIM} if amortized else {}
  layer = flows.get(name, dtype=dtype, **kwargs)
  rng = np.random.default_rng(seed)
  z = tf.constant(rng.normal(size=(2, dim)), dtype)
  context = tf.constant(rng.normal(size=(2, CONTEXT_DIM)), dtype)
  layer(z, context=context if amortized else None)
  assert layer.trainable_weights, f"{name} has no trainable weights"
  for w in layer.trainable_weights:
    w.assign(rng.normal(scale=scale, size=w.shape).astype(w.dtype))
  return layer


def inputs(dim, batch, dtype="float64", seed=1):
  rng = np.random.default_rng(seed)
  z = tf.constant(rng.normal(size=(batch, dim)), dtype)
  context = tf.constant(rng.normal(size=(batch, CONTEXT_DIM)), dtype)
  return z, context


def test_registry_has_the_contract_names():
  expected = {
      "planar", "radial", "sylvester_orthogonal", "sylvester_householder",
      "sylvester_triangular", "iaf", "maf", "real_nvp", "spline",
  }
  assert expected <= set(NAMES)


def test_unknown_name_lists_valid_names():
  with pytest.raises(ValueError, match="Unknown flow name 'nope'.*planar"):
    flows.get("nope")


@pytest.mark.parametrize("amortized", [False, True],
                         ids=["global", "amortized"])
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("dim", [1, 2, 7])
@pytest.mark.parametrize("name", NAMES)
def test_log_det_matches_autodiff_jacobian(name, dim, batch, amortized):
  layer = make_flow(name, dim, amortized)
  z, context = inputs(dim, batch)
  with tf.GradientTape() as tape:
    tape.watch(z)
    y, log_det = layer(z, context=context)
  jacobian = tape.batch_jacobian(y, z)
  _, expected = tf.linalg.slogdet(jacobian)
  assert y.shape == z.shape and y.dtype == tf.float64
  assert log_det.shape == (batch,)
  np.testing.assert_allclose(log_det, expected, rtol=1e-6, atol=1e-9)
  # The transform is not the identity: the test would catch a no-op flow.
  assert np.max(np.abs(y - z)) > 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_amortized_flow_differs_per_example(name):
  layer = make_flow(name, 3, amortized=True)
  z, context = inputs(3, 2)
  same_z = tf.concat([z[:1], z[:1]], axis=0)
  y, _ = layer(same_z, context=context)
  assert np.max(np.abs(y[0] - y[1])) > 1e-6
  with pytest.raises(ValueError, match="context"):
    layer(same_z)


@pytest.mark.parametrize("amortized", [False, True],
                         ids=["global", "amortized"])
@pytest.mark.parametrize("dim", [1, 2, 7])
@pytest.mark.parametrize("name", INVERTIBLE)
def test_inverse_round_trip(name, dim, amortized):
  layer = make_flow(name, dim, amortized)
  x, context = inputs(dim, 5)
  y, log_det = layer(x, context=context)
  x_back, log_det_inverse = layer.inverse(y, context=context)
  np.testing.assert_allclose(x_back, x, rtol=1e-6, atol=1e-8)
  np.testing.assert_allclose(log_det_inverse, -log_det, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", NOT_INVERTIBLE)
def test_no_analytic_inverse_raises_naming_the_flow(name):
  layer = make_flow(name, 2, amortized=False)
  with pytest.raises(NotImplementedError, match=name):
    layer.inverse(tf.zeros((1, 2), tf.float64))


@pytest.mark.parametrize("amortized", [False, True],
                         ids=["global", "amortized"])
@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name, amortized):
  layer = make_flow(name, 4, amortized, dtype="float32")
  config = layer.get_config()
  clone = type(layer).from_config(config)
  assert clone.get_config() == config
  z, context = inputs(4, 3, "float32")
  clone(z, context=context)
  clone.set_weights(layer.get_weights())
  y, log_det = layer(z, context=context)
  y2, log_det2 = clone(z, context=context)
  np.testing.assert_allclose(y2, y, rtol=1e-6)
  np.testing.assert_allclose(log_det2, log_det, rtol=1e-5, atol=1e-6)


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
  rng = np.random.default_rng(3)
  for w in model.trainable_weights:
    w.assign(rng.normal(scale=0.5, size=w.shape).astype("float32"))
  z, context = inputs(dim, 6, "float32")
  expected = model([z, context])
  path = str(tmp_path / "model.keras")
  model.save(path)
  reloaded = keras.models.load_model(path)
  got = reloaded([z, context])
  for a, b in zip(got, expected):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("name", NAMES)
def test_as_bijector_agrees_with_the_layer(name):
  dim = 3
  layer = make_flow(name, dim, amortized=True)
  z, context = inputs(dim, 5)
  base = tfd.MultivariateNormalDiag(loc=tf.zeros((5, dim), tf.float64))
  dist = tfd.TransformedDistribution(base, layer.as_bijector(context))
  y = dist.sample(seed=(1, 2))
  assert y.shape == (5, dim)
  # The sample equals the layer applied to the base sample with the same seed.
  z0 = base.sample(seed=(1, 2))
  y_layer, log_det = layer(z0, context=context)
  np.testing.assert_allclose(y, y_layer, rtol=1e-10)
  # Change of variables written out: log q(y) = log q0(z0) - log|det J|.
  np.testing.assert_allclose(
      dist.log_prob(y), base.log_prob(z0) - log_det, rtol=1e-8
  )
  if layer.invertible:  # log_prob of fresh points goes through the inverse.
    x0, log_det_inv = layer.inverse(z, context=context)
    np.testing.assert_allclose(
        dist.log_prob(tf.identity(z)),
        base.log_prob(x0) + log_det_inv,
        rtol=1e-8,
    )


@pytest.mark.parametrize("name", NAMES)
def test_float32_agrees_with_float64(name):
  layer64 = make_flow(name, 5, amortized=True)
  layer32 = flows.get(name, context_dim=CONTEXT_DIM, dtype="float32")
  z, context = inputs(5, 4)
  layer32(tf.cast(z, tf.float32), context=tf.cast(context, tf.float32))
  layer32.set_weights([w.astype("float32") for w in layer64.get_weights()])
  y64, ld64 = layer64(z, context=context)
  y32, ld32 = layer32(tf.cast(z, tf.float32),
                      context=tf.cast(context, tf.float32))
  assert y32.dtype == tf.float32 and ld32.dtype == tf.float32
  np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(ld32, ld64, rtol=1e-4, atol=1e-4)


def test_flow_stack_sums_log_dets_and_inverts():
  layers = [make_flow(n, 3, False, seed=i) for i, n in enumerate(INVERTIBLE)]
  stack = flows.FlowStack(layers)
  z, _ = inputs(3, 4)
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


def test_empty_stack_is_identity():
  z, _ = inputs(3, 4, "float32")
  y, log_det = flows.FlowStack([])(z)
  np.testing.assert_array_equal(y, z)
  np.testing.assert_array_equal(log_det, np.zeros(4))


def test_wrong_rank_input_is_refused():
  with pytest.raises(ValueError, match=r"\[batch, d\]"):
    flows.get("planar")(tf.zeros((2, 3, 4)))
