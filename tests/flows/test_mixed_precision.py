"""Flows under the mixed_float16 policy: the log-det maths runs in float32.

Under mixed_float16 a flow receives z (and the context) rounded to float16 by
Keras and returns y in float16, but computes its parameters, its conditioner
network and every log-det term (det, log, log-derivative) in float32. So the
only error of its log-det against float64 with the same weights is the float16
rounding of the inputs, whose first-order bound is

    |L16 - L64| <= 2^-11 * sum_j |dL/dx_j| |x_j|,   x = (z, context),

(2^-11: the unit roundoff of float16) plus float32 rounding of the maths. The
weights are scaled and the context is large, so that the log-dets are far
from 0 (checked): a flow returning log_det = 0, or one computing its log-det
in float16, fails.
"""

import numpy as np
import pytest
import tensorflow as tf

from vib_flows import flows

CONTEXT_DIM = 3
FLOAT16_UNIT_ROUNDOFF = 2.0 ** -11
# float32 maths: about 100 float32 ulps of the log-det.
FLOAT32_ALLOWANCE = 1e-5


# Raw parameters that put the geometric flows near the edge of invertibility,
# where their log-dets are large: planar u = -12, w = 0.5 (with
# b = 0, so a = w.z ~ 0: w.u = -6 d); radial expanding (beta ~ 5 >> alpha
# ~ 0.05) around z0 = 0; Sylvester r_mm r~_mm ~ -0.998. The inputs z are small
# (|a| << 1).
STRESSED = {
    "planar": {"u": -12.0, "w": 0.5, "b": 0.0},
    "radial": {"z0": 0.0, "alpha": -3.0, "beta": 5.0},
    "sylvester": {"r": 4.0, "r_tilde": -4.0, "b": 0.0},
}


def _float64_and_mixed(name, dim, amortized, seed=0):
  """The same flow in float64 and mixed_float16, with weights far from init.

  Conditioner networks get random weights (stddev 1); the parameters of the
  geometric flows are set to STRESSED plus, for amortized flows, a context
  kernel of stddev 0.1 (a per-example spread of ~1 with the large context).
  """
  kwargs = {"context_dim": CONTEXT_DIM} if amortized else {}
  reference = flows.get(name, dim=dim, dtype="float64", **kwargs)
  mixed = flows.get(name, dim=dim, dtype="mixed_float16", **kwargs)
  for layer in (reference, mixed):
    layer.build((None, dim), (None, CONTEXT_DIM) if amortized else None)
  stressed = STRESSED.get(name.split("_")[0], {})
  rng = np.random.default_rng(seed)
  for w in reference.weights:
    key = w.path.split("/")[-1]
    value = rng.normal(scale=1.0, size=w.shape)
    if key in stressed:
      value = np.full(w.shape, stressed[key])
    elif stressed and key.endswith("_context_kernel"):
      value *= 0.1
    w.assign(value)
  mixed.set_weights([w.astype("float32") for w in reference.get_weights()])
  return reference, mixed


def _log_det_and_bound(layer, z, context):
  """float64 log-det, and the first-order effect of z, context in f16."""
  with tf.GradientTape() as tape:
    tape.watch([z, context])
    _, log_det = layer(z, context=context)
  # ZERO: a log-det constant in z (an elementwise scaling) has no gradient.
  grad_z, grad_context = tape.gradient(
      log_det, [z, context],
      unconnected_gradients=tf.UnconnectedGradients.ZERO)
  bound = tf.reduce_sum(tf.abs(grad_z * z), axis=-1)
  if grad_context is not None:  # Each example's log-det sees its own context.
    bound += tf.reduce_sum(tf.abs(grad_context * context), axis=-1)
  return log_det.numpy(), FLOAT16_UNIT_ROUNDOFF * bound.numpy()


def _check_mixed_against_float64(reference, mixed, z, context):
  log_det_ref, bound = _log_det_and_bound(reference, z, context)
  y, log_det = mixed(tf.cast(z, tf.float32),
                     context=tf.cast(context, tf.float32))
  assert y.dtype == tf.float16 and log_det.dtype == tf.float32
  assert np.all(np.isfinite(log_det))
  tolerance = 2 * bound + FLOAT32_ALLOWANCE * (1 + np.abs(log_det_ref))
  error = np.abs(log_det.numpy() - log_det_ref)
  assert np.all(error <= tolerance), (log_det.numpy(), log_det_ref, tolerance)
  return log_det_ref


# The package's flows, whatever other test modules registered in this
# process: their stressed weights are chosen per family.
PACKAGE_FLOWS = [n for n in flows.names()
                 if flows.get_class(n).__module__.startswith("vib_flows.")]


@pytest.mark.parametrize("amortized", [False, True],
                         ids=["global", "amortized"])
@pytest.mark.parametrize("name", PACKAGE_FLOWS)
def test_mixed_precision_log_det_matches_float64(name, amortized):
  dim, batch = 4, 8
  reference, mixed = _float64_and_mixed(name, dim, amortized)
  rng = np.random.default_rng(1)
  # Small z for the geometric flows: near their stressed point.
  z_scale = 0.05 if name.split("_")[0] in STRESSED else 1.0
  z = tf.constant(rng.normal(scale=z_scale, size=(batch, dim)))
  # A large context gives large conditioner outputs (amortized flows).
  context = tf.constant(rng.normal(scale=4.0, size=(batch, CONTEXT_DIM)))
  log_det_ref = _check_mixed_against_float64(reference, mixed, z, context)
  # Far from 0: returning log_det = 0 cannot pass.
  assert np.mean(np.abs(log_det_ref)) > 1.0, log_det_ref


@pytest.mark.parametrize("w_dot_u,expected", [(-6.0, -6.0012), (-8.0, -8.0002)])
def test_mixed_precision_planar_near_its_invertibility_limit(w_dot_u, expected):
  """w.u_hat = -1 + softplus(w.u) -> -1: det = 1 + h' w.u_hat nearly cancels.

  At a = w.z + b = 0, h' = 1 and det = softplus(w.u): log det = log softplus(-6)
  = -6.0012 and log softplus(-8) = -8.0002 (closed form, checked below). In
  float16, -1 + softplus(w.u) rounds to a multiple of 2^-11 near -1, giving
  -inf or -5.55.
  """
  np.testing.assert_allclose(np.log(np.log1p(np.exp(w_dot_u))), expected,
                             atol=1e-4)
  reference, mixed = _float64_and_mixed("planar", 2, False)
  for layer in (reference, mixed):
    weights = {w.path.split("/")[-1]: w for w in layer.weights}
    weights["w"].assign(np.array([[1.0, 0.0]]))  # One map: [1, d].
    weights["u"].assign(np.array([[w_dot_u, 0.5]]))
    weights["b"].assign(np.array([[0.0]]))
  z = tf.constant([[0.0, 1.3], [0.0, -0.7], [1e-3, 0.2]], tf.float64)
  context = tf.zeros((3, CONTEXT_DIM), tf.float64)
  log_det_ref = _check_mixed_against_float64(reference, mixed, z, context)
  np.testing.assert_allclose(log_det_ref[:2], expected, atol=1e-4)
