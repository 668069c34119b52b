"""Checks of iaf, maf, real_nvp and spline beyond the shared flow contract.

The MADE's autoregressive property and the triangular Jacobians are read off
autodiff Jacobians; the spline is compared with TFP's
`RationalQuadraticSpline` in float64 (at, near and between knots, and outside
the bound); samples [S, B, d] with a context [B, C] give the numbers of the
slices, with the context passing through the conditioner with its own leading
shape; the density fit trains a two-layer spline stack on two moons (affine
stacks, real_nvp or maf, need far more steps on this data).
"""

import keras
import numpy as np
import pytest
from sklearn import datasets
import tensorflow as tf
import tensorflow_probability as tfp

from vib_flows import flows
from vib_flows.flows import autoregressive
from vib_flows.flows import backend as flow_backend
from vib_flows.flows import conditioners
from vib_flows.flows import functional

tfb = tfp.bijectors
tfd = tfp.distributions

CONTEXT_DIM = 3


def randomize(layer, seed=0, scale=0.7):
  rng = np.random.default_rng(seed)
  for w in layer.trainable_weights:
    w.assign(rng.normal(scale=scale, size=w.shape).astype(w.dtype))
  return layer


def random_flow(name, dim, amortized=False, scale=0.7, **kwargs):
  if amortized:
    kwargs["context_dim"] = CONTEXT_DIM
  layer = flows.get(name, dim=dim, dtype="float64", **kwargs)
  return randomize(layer, scale=scale)


def reversed_order(layer):
  """R f R (R = Reverse): the layer conditioning on the reversed order."""
  dtype = layer.dtype_policy
  return flows.FlowStack(
      [flows.Reverse(dtype=dtype), layer, flows.Reverse(dtype=dtype)],
      dtype=dtype)


def random_inputs(dim, batch=4, seed=1):
  rng = np.random.default_rng(seed)
  return (tf.constant(rng.normal(size=(batch, dim))),
          tf.constant(rng.normal(size=(batch, CONTEXT_DIM))))


@pytest.mark.parametrize("amortized", [False, True],
                         ids=["global", "amortized"])
@pytest.mark.parametrize("reverse", [False, True], ids=["natural", "reversed"])
def test_made_outputs_depend_only_on_earlier_inputs(reverse, amortized):
  dim = 5
  made = autoregressive.MADE(
      dim, num_params=3, hidden_units=16, reverse=reverse,
      context_dim=CONTEXT_DIM if amortized else None, dtype="float64")
  made.build((None, dim))
  randomize(made)
  assert not made.non_trainable_weights  # Masks are constants, not weights.
  z, context = random_inputs(dim)
  context = context if amortized else None
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(z)
    if amortized:
      tape.watch(context)
    params = made(z, context=context)
  assert params.shape == (4, dim, 3)
  # [batch, P, i, j] = |d params[:, i, p] / d z_j|.
  jacobian = np.moveaxis(np.abs(tape.batch_jacobian(params, z)), 2, 1)
  order = np.arange(dim)[::-1] if reverse else np.arange(dim)
  allowed = order[None, :] < order[:, None]  # [i, j]: j comes before i.
  assert np.all(jacobian[:, :, ~allowed] == 0.0)
  # No extra zeros: every allowed dependency is there.
  assert np.all(np.max(jacobian, axis=(0, 1))[allowed] > 1e-8)
  if amortized:  # Every output, the first in the order included, sees context.
    dcontext = np.abs(tape.batch_jacobian(params, context))
    assert np.all(np.max(dcontext, axis=-1) > 1e-8)


@pytest.mark.parametrize("amortized", [False, True],
                         ids=["global", "amortized"])
@pytest.mark.parametrize("reverse", [False, True], ids=["natural", "reversed"])
@pytest.mark.parametrize("name", ["iaf", "maf"])
def test_autoregressive_jacobians_are_triangular(name, reverse, amortized):
  dim = 5
  # Smaller weights than the contract test's: no saturated unit hides an entry.
  layer = random_flow(name, dim, amortized, scale=0.3)
  if reverse:
    layer = reversed_order(layer)
  z, context = random_inputs(dim)
  for inverse in (False, True):
    with tf.GradientTape() as tape:
      tape.watch(z)
      if inverse:
        y, _ = layer.inverse(z, context=context)
      else:
        y, _ = layer(z, context=context)
    jacobian = np.abs(tape.batch_jacobian(y, z))
    upper = np.triu(np.ones((dim, dim), bool), k=1)
    zero = upper.T if reverse else upper
    assert np.all(jacobian[:, zero] == 0.0)
    assert np.all(np.max(jacobian, axis=0)[~zero] > 1e-8)


NAMES = ["iaf", "maf", "real_nvp", "spline"]
SAMPLES, BATCH = 2, 3


def sample_inputs(dim, seed=2):
  """Returns z [S, B, d] and context [B, C] in float64."""
  rng = np.random.default_rng(seed)
  return (tf.constant(rng.normal(size=(SAMPLES, BATCH, dim))),
          tf.constant(rng.normal(size=(BATCH, CONTEXT_DIM))))


@pytest.mark.parametrize("name", NAMES)
def test_samples_with_a_shared_context_equal_the_slices(name):
  layer = random_flow(name, 3, amortized=True, scale=0.5)
  z, context = sample_inputs(3)
  for direction in (layer, layer.inverse):
    y, log_det = direction(z, context=context)
    assert y.shape == z.shape and log_det.shape == z.shape[:-1]
    for s in range(SAMPLES):
      y_s, log_det_s = direction(z[s], context=context)
      np.testing.assert_allclose(y[s], y_s, rtol=1e-12, atol=1e-12)
      np.testing.assert_allclose(log_det[s], log_det_s, rtol=1e-12,
                                 atol=1e-12)


@pytest.mark.parametrize("amortized", [False, True],
                         ids=["global", "amortized"])
@pytest.mark.parametrize("name", NAMES)
def test_inverse_round_trips_at_rank_three(name, amortized):
  layer = random_flow(name, 4, amortized, scale=0.5)
  z, context = sample_inputs(4)
  context = context if amortized else None
  y, log_det = layer(z, context=context)
  z_back, log_det_inverse = layer.inverse(y, context=context)
  assert z_back.shape == z.shape
  np.testing.assert_allclose(z_back, z, rtol=1e-9, atol=1e-9)
  np.testing.assert_allclose(log_det_inverse, -log_det, rtol=1e-9, atol=1e-9)
  assert np.max(np.abs(np.asarray(y - z))) > 1e-2  # Not the identity.


class _RecordingOps:
  """keras.ops, recording the shapes of the first argument of every matmul."""

  def __init__(self):
    self.matmul_shapes = []

  def __getattr__(self, name):
    return getattr(keras.ops, name)

  def matmul(self, x, y):
    self.matmul_shapes.append(tuple(x.shape))
    return keras.ops.matmul(x, y)


@pytest.mark.parametrize("name", NAMES)
def test_the_context_is_not_tiled_over_samples(name, monkeypatch):
  dim = CONTEXT_DIM + 1  # No other product has C inputs.
  layer = random_flow(name, dim, amortized=True)
  z, context = sample_inputs(dim)
  recording = _RecordingOps()
  monkeypatch.setattr(conditioners, "ops", recording)
  monkeypatch.setattr(flow_backend, "ops", recording)  # backend.matmul.
  layer(z, context=context)
  context_products = [shape for shape in recording.matmul_shapes
                      if shape[-1] == CONTEXT_DIM]
  assert context_products  # The context goes through the network...
  # ... with its own leading shape [B], never z's [S, B].
  assert all(shape == (BATCH, CONTEXT_DIM) for shape in context_products)


def random_spline_parameters(rng, shape, num_bins, bound):
  """Widths, heights [*shape, K] (sum 2 * bound), slopes [*shape, K - 1]."""
  def bins():
    raw = np.exp(rng.normal(size=shape + (num_bins,)))
    return 2 * bound * (0.1 / num_bins + 0.9 * raw / raw.sum(-1, keepdims=True))
  slopes = np.exp(rng.uniform(-2, 2, size=shape + (num_bins - 1,)))
  return bins(), bins(), slopes


def test_spline_matches_tfp_at_and_near_knots_and_outside_the_bound():
  rng = np.random.default_rng(3)
  num_bins, bound, points = 5, 2.0, 40
  widths, heights, slopes = random_spline_parameters(rng, (2,), num_bins,
                                                     bound)
  reference = tfb.RationalQuadraticSpline(widths, heights, slopes,
                                          range_min=-bound)
  # Per coordinate: the knots, the knots +- a few ulps and +- 1e-9, random
  # points inside, and points outside and on the bound.
  x_knots = -bound + np.concatenate(
      [np.zeros((2, 1)), np.cumsum(widths, -1)], -1)  # [2, K + 1]
  y_knots = -bound + np.concatenate(
      [np.zeros((2, 1)), np.cumsum(heights, -1)], -1)
  outside = np.array([-bound, bound, -bound - 1e-9, bound + 1e-9, -7.0, 30.0])

  def grid(knots):  # [points + 6 + 5 (K + 1), 2]
    near = np.concatenate([np.nextafter(knots, -np.inf),
                           np.nextafter(knots, np.inf),
                           knots - 1e-9, knots + 1e-9, knots], -1)
    inside = rng.uniform(-bound, bound, size=(2, points))
    both = np.concatenate(
        [np.clip(near, -bound, bound), inside, np.tile(outside, (2, 1))], -1)
    return both.T

  for inverse, knots in ((False, x_knots), (True, y_knots)):
    x = grid(knots)  # [M, 2]: parameters [2, K] broadcast over M.
    out, log_derivative = functional.rational_quadratic_spline(
        tf.constant(x), tf.constant(widths), tf.constant(heights),
        tf.constant(slopes), bound, inverse=inverse)
    assert out.shape == x.shape and log_derivative.shape == x.shape
    if inverse:
      expected = reference.inverse(x)
      # log tau' at the input-side point, i.e. at tau^-1(x).
      expected_log = -reference.inverse_log_det_jacobian(x, event_ndims=0)
    else:
      expected = reference.forward(x)
      expected_log = reference.forward_log_det_jacobian(x, event_ndims=0)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(log_derivative, expected_log, rtol=1e-10,
                               atol=1e-10)
    outside_rows = slice(-len(outside), None)
    np.testing.assert_array_equal(out[outside_rows], x[outside_rows])


def test_tanh_from_expm1_is_accurate_in_float64():
  # The float64 tanh of backends whose keras.ops.tanh returns float32.
  x = np.concatenate([[0.0, -0.0, 1e-300, -1e-12, 1e-8, 30.0, -30.0, 1e3,
                       -1e3], np.linspace(-20, 20, 401)])
  got = np.asarray(functional.tanh_from_expm1(tf.constant(x, tf.float64)))
  assert got.dtype == np.float64
  eps = np.finfo(np.float64).eps  # Three roundings: within 4 ulps.
  np.testing.assert_allclose(got, np.tanh(x), rtol=4 * eps, atol=0)
  assert functional.tanh(tf.constant(x)).dtype == tf.float64


@pytest.mark.parametrize("amortized", [False, True],
                         ids=["global", "amortized"])
def test_spline_is_the_identity_outside_the_bound(amortized):
  layer = random_flow("spline", 2, amortized, bound=3.0, num_bins=5)
  _, context = random_inputs(2, batch=6)
  z = tf.constant([[0.3, -3.5], [0.3, 3.01], [-1.0, 50.0], [2.0, -1e4],
                   [0.3, 0.5], [0.3, -2.9]], tf.float64)
  y, log_det = layer(z, context=context)
  outside = slice(0, 4)
  np.testing.assert_array_equal(y[outside], z[outside])
  np.testing.assert_array_equal(log_det[outside], np.zeros(4))
  assert np.all(np.abs(y[4:, 1] - z[4:, 1]) > 1e-3)  # Inside: not the identity.
  assert layer.get_config()["bound"] == 3.0 and layer.num_bins == 5


@pytest.mark.parametrize("dim", [3, 4])
@pytest.mark.parametrize("name", ["real_nvp", "spline"])
def test_reverse_changes_which_coordinates_are_transformed(name, dim):
  z, _ = random_inputs(dim)
  n_b = (dim + 1) // 2
  for reverse in (False, True):
    layer = random_flow(name, dim)
    y, _ = (reversed_order(layer) if reverse else layer)(z)
    changed = np.max(np.abs(np.asarray(y - z)), axis=0) > 1e-6
    expected = np.arange(dim) < n_b if reverse else np.arange(dim) >= dim - n_b
    np.testing.assert_array_equal(changed, expected)


@pytest.mark.parametrize("name", ["iaf", "maf", "real_nvp", "spline"])
def test_new_flows_start_near_the_identity(name):
  layer = flows.get(name, context_dim=CONTEXT_DIM)
  assert layer.needs_permutation
  z, context = random_inputs(4)
  z, context = tf.cast(z, tf.float32), tf.cast(context, tf.float32)
  y, log_det = layer(z, context=context)
  if name == "iaf":  # z' = sigmoid(forget_bias) z while the MADE outputs 0.
    ratio = np.asarray(y / z)
    np.testing.assert_allclose(ratio, ratio[0, 0], rtol=1e-5)
    assert 0.85 < ratio[0, 0] < 0.9
  else:
    np.testing.assert_allclose(y, z, atol=1e-6)
    np.testing.assert_allclose(log_det, np.zeros(4), atol=1e-5)


@pytest.mark.parametrize("name, kwargs", [
    ("iaf", {"forget_bias": 1.0}),
    ("maf", {}),
    ("real_nvp", {}),
    ("spline", {"num_bins": 4, "bound": 2.5}),
])
def test_config_keeps_the_flow_kwargs(name, kwargs):
  layer = flows.get(name, hidden_units=8, **kwargs)
  layer(tf.zeros((2, 3)))
  config = layer.get_config()
  assert config["hidden_units"] == 8
  for key, value in kwargs.items():
    assert config[key] == value
  clone = type(layer).from_config(config)
  assert clone.get_config() == config


def test_spline_stack_fits_two_moons_well_beyond_a_gaussian():
  x, _ = datasets.make_moons(n_samples=2000, noise=0.05, random_state=0)
  x = ((x - x.mean(0)) / x.std(0)).astype("float32")
  train, test = x[:1500], x[1500:]
  gaussian = tfd.MultivariateNormalTriL(
      train.mean(0), np.linalg.cholesky(np.cov(train.T)).astype("float32"))
  gaussian_ll = float(tf.reduce_mean(gaussian.log_prob(test)))  # About -2.7.

  stack = flows.make_stack("spline", 2, dim=2, hidden_units=32)
  base = tfd.MultivariateNormalDiag(tf.zeros(2))
  optimizer = keras.optimizers.Adam(1e-2)

  def log_likelihood(points):  # The density direction is the inverse.
    z0, log_det_inverse = stack.inverse(points)
    return base.log_prob(z0) + log_det_inverse

  @tf.function
  def train_step(batch):
    with tf.GradientTape() as tape:
      loss = -tf.reduce_mean(log_likelihood(batch))
    grads = tape.gradient(loss, stack.trainable_variables)
    optimizer.apply_gradients(zip(grads, stack.trainable_variables))
    return loss

  rng = np.random.default_rng(0)
  for _ in range(150):
    train_step(train[rng.integers(0, len(train), 256)])
  flow_ll = float(tf.reduce_mean(log_likelihood(test)))  # About -1.4.
  assert flow_ll > gaussian_ll + 0.8, (flow_ll, gaussian_ll)
