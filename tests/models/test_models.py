"""Model-level tests of vib_flows.models (VAE, VIB, build_model)."""

import math
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from vib_flows import flows
from vib_flows import models
from vib_flows.app import model_builder

SEED = tf.constant([1, 2], tf.int32)


@pytest.mark.parametrize("kind", ["vae", "vib"])
@pytest.mark.parametrize("estimator", ["pathwise", "score_function"])
@pytest.mark.parametrize("num_flows,amortized", [(0, False), (2, True)])
def test_per_example_loss_shapes_and_keys(kind, estimator, num_flows,
                                          amortized):
  model = helpers.small_model(kind, loss__estimator=estimator,
                              flow__num_flows=num_flows,
                              flow__amortized=amortized, loss__num_samples=3)
  assert isinstance(model, models.VAE if kind == "vae" else models.VIB)
  surrogate, terms = model.per_example_loss(helpers.digits_batch(), 0.5, SEED)
  keys = ({"loss", "elbo", "reconstruction", "kl"} if kind == "vae" else
          {"loss", "cross_entropy", "kl", "accuracy"})
  assert set(terms) == keys
  for value in [surrogate, *terms.values()]:
    assert value.shape == (6,) and value.dtype == tf.float32
    assert np.all(np.isfinite(value.numpy()))
  assert model.closed_form_kl == (num_flows == 0)
  if estimator == "pathwise":
    np.testing.assert_allclose(surrogate.numpy(), terms["loss"].numpy())
  if kind == "vae":
    t = {k: v.numpy() for k, v in terms.items()}
    np.testing.assert_allclose(t["elbo"], t["reconstruction"] - t["kl"],
                               rtol=1e-6)
    np.testing.assert_allclose(t["loss"], -t["reconstruction"] + 0.5 * t["kl"],
                               rtol=1e-6)
  else:
    assert set(np.unique(terms["accuracy"].numpy())) <= {0.0, 1.0}


def test_every_flow_likelihood_and_prior_builds():
  batch = helpers.digits_batch(4)
  # The package's flows: other tests register flows of their own (some
  # deliberately incomplete) in the same process.
  package_flows = [n for n in flows.names()
                   if flows.get_class(n).__module__.startswith("vib_flows.")]
  assert len(package_flows) >= 9
  for name in package_flows:
    model = helpers.small_model(flow__name=name, flow__num_flows=2,
                                flow__amortized=True)
    _, terms = model.per_example_loss(batch, 1.0, SEED)
    assert np.all(np.isfinite(terms["loss"].numpy())), name
  for likelihood, x in (("bernoulli", (batch["x"] > 8).astype("float32")),
                        ("gaussian", batch["x"] / 16.0)):
    model = helpers.small_model(model__likelihood=likelihood)
    _, terms = model.per_example_loss({"x": x}, 1.0, SEED)
    assert np.all(np.isfinite(terms["loss"].numpy())), likelihood
  for prior in ("mixture", "flow"):
    model = helpers.small_model(model__prior=prior)
    assert not model.closed_form_kl
    _, terms = model.per_example_loss(batch, 1.0, SEED)
    assert np.all(np.isfinite(terms["kl"].numpy())), prior


def test_flow_config_fields_reach_the_layers():
  model = helpers.small_model(flow__name="iaf", flow__num_flows=2,
                              flow__forget_bias=5.0, flow__hidden_units=12)
  layers = [f for f in model.flow.flows if f.flow_name == "iaf"]
  assert [f.flow_name for f in model.flow.flows] == [
      "iaf", "reverse", "iaf", "reverse"]
  assert [f.forget_bias for f in layers] == [5.0, 5.0]
  assert [f.hidden_units for f in layers] == [12, 12]
  # At initialization the MADE outputs 0: each layer scales z by sigma =
  # sigmoid(g(forget_bias)), g the gate's soft floor F + softplus(a - F), so
  # the summed log-det is 2 * d * log sigma.
  floor = layers[0].gate_floor
  gate = floor + math.log1p(math.exp(5.0 - floor))
  sigma = 1 / (1 + math.exp(-gate))
  z = tf.random.normal([3, 4])
  zk, log_det = model.flow(z)
  np.testing.assert_allclose(zk, z * sigma ** 2, rtol=1e-5)
  np.testing.assert_allclose(log_det, [2 * 4 * math.log(sigma)] * 3, rtol=1e-5)


@pytest.mark.parametrize("field,value,valid", [
    ("model__kind", "gan", "vae, vib"),
    ("model__likelihood", "poisson", "bernoulli, categorical, gaussian"),
    ("model__prior", "laplace", "flow, mixture, standard_normal"),
    ("flow__name", "glow", "planar"),
    ("loss__estimator", "gumbel", "pathwise, score_function"),
])
def test_unknown_names_list_valid_ones(field, value, valid):
  with pytest.raises(ValueError, match=valid):
    helpers.small_model(**{field: value})


def test_seeds_repeat_and_differ():
  model = helpers.small_model(flow__num_flows=2, flow__amortized=True)
  batch = helpers.digits_batch()
  a = model.per_example_loss(batch, 1.0, SEED)[1]["loss"].numpy()
  b = model.per_example_loss(batch, 1.0, SEED)[1]["loss"].numpy()
  c = model.per_example_loss(batch, 1.0, [1, 3])[1]["loss"].numpy()
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  np.testing.assert_array_equal(model.encode(batch["x"], SEED)["z"].numpy(),
                                model.encode(batch["x"], SEED)["z"].numpy())
  np.testing.assert_array_equal(model.sample(3, SEED).numpy(),
                                model.sample(3, SEED).numpy())
  # The same config and seed build the same weights.
  keras.utils.set_random_seed(5)
  w1 = helpers.small_model().get_weights()
  keras.utils.set_random_seed(5)
  w2 = helpers.small_model().get_weights()
  for u, v in zip(w1, w2):
    np.testing.assert_array_equal(u, v)


def _grads(tape, target, variables):
  return [np.zeros(v.shape) if g is None else g.numpy()
          for g, v in zip(tape.gradient(target, variables), variables)]


def test_vib_beta_zero_gradient_is_cross_entropy_gradient():
  model = helpers.small_model("vib", flow__num_flows=2, flow__amortized=True,
                              model__prior="mixture")
  batch = helpers.digits_batch(8)
  variables = model.trainable_variables
  with tf.GradientTape(persistent=True) as tape:
    surrogate, _ = model.per_example_loss(batch, 0.0, SEED)
    loss = tf.reduce_mean(surrogate)
    # Reference: plain cross-entropy of the classifier at the same sample.
    z = model.encode(batch["x"], SEED)["z"]
    logits = model.classifier(z)
    reference = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
        batch["y"], logits, from_logits=True))
    surrogate_beta1, _ = model.per_example_loss(batch, 1.0, SEED)
  np.testing.assert_allclose(float(loss), float(reference), rtol=1e-5)
  got = _grads(tape, loss, variables)
  want = _grads(tape, reference, variables)
  for g, w, v in zip(got, want, variables):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6, err_msg=v.path)
  with_kl = _grads(tape, tf.reduce_mean(surrogate_beta1), variables)
  assert any(not np.allclose(g, w) for g, w in zip(with_kl, want))


def _np_gaussian_log_prob(z, loc, scale):
  return np.sum(-0.5 * np.log(2 * np.pi) - np.log(scale)
                - 0.5 * ((z - loc) / scale) ** 2, axis=-1)


def test_zero_flows_give_the_loss_of_no_flow():
  batch = helpers.digits_batch(5)
  config = helpers.small_config(flow__name="planar", flow__num_flows=0,
                                loss__force_monte_carlo_kl=True)
  flowless = model_builder.build_model(config, helpers.data_info())
  assert len(flowless.flow) == 0
  no_flow = models.VAE((64,), flowless.encoder, None, flowless.decoder,
                       flowless.prior, flowless.likelihood,
                       force_monte_carlo_kl=True)
  a = flowless.per_example_loss(batch, 1.0, SEED)[1]
  b = no_flow.per_example_loss(batch, 1.0, SEED)[1]
  for key in a:
    np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), rtol=1e-6)
  # The loss written out: -log p(x|z0) + log q0(z0|x) - log N(z0; 0, I).
  enc = flowless.encode(batch["x"], SEED)
  z, loc, scale = (enc[k].numpy() for k in ("z", "z_mean", "z_stddev"))
  logits = flowless.decoder(z).numpy().reshape(5, 64, 17)
  log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  log_px = np.take_along_axis(
      log_softmax, batch["x"].astype(int)[..., None], -1)[..., 0].sum(-1)
  expected = (-log_px + _np_gaussian_log_prob(z, loc, scale)
              - _np_gaussian_log_prob(z, 0.0, 1.0))
  np.testing.assert_allclose(a["loss"].numpy(), expected, rtol=1e-5)
  # And the closed-form KL of the same zero-flow model agrees in expectation.
  closed = helpers.small_model(flow__num_flows=0)
  closed.set_weights(flowless.get_weights())
  kl_closed = closed.per_example_loss(batch, 1.0, SEED)[1]["kl"].numpy()
  flowless.num_samples = 4000
  kl_mc = flowless.per_example_loss(batch, 1.0, SEED)[1]["kl"].numpy()
  np.testing.assert_allclose(kl_mc, kl_closed, atol=0.1)


def test_kl_route_and_importance_weight_route_give_the_same_elbo():
  """Reconstruction - KL of the loss equals mean_k log w_k of log_likelihood.

  Two routes through the flow's change of variables: the loss's Monte Carlo
  KL (`objectives.monte_carlo_kl` of log qK = log q0 - sum log|det J|,
  `objectives.flow_log_prob`) and `log_likelihood`'s log-weights
  (`objectives.log_importance_weights`, summed chunk by chunk). With
  `example_index`, both draw sample k of example b from (seed, b, k), so on
  the same K samples they agree to float rounding. The flow (2 amortized IAF
  layers with random weights) has log-dets of nats, and the mixture prior is
  no standard normal, so a wrong sign of the log-det, of log p(z) or of the
  KL in either route moves one ELBO by far more than the tolerance.
  """
  model = helpers.small_model(flow__name="iaf", flow__num_flows=2,
                              flow__amortized=True, model__prior="mixture",
                              loss__num_samples=16)
  rng = np.random.default_rng(3)
  for variable in model.flow.weights:
    variable.assign(rng.normal(scale=0.3, size=variable.shape))
  _, log_det = model.flow(tf.random.normal([64, 4], seed=1),
                          context=tf.random.normal([64, 8], seed=2))
  assert np.mean(np.abs(log_det.numpy())) > 0.5  # The flow matters.
  batch = helpers.digits_batch(5)
  index = tf.range(5)
  terms = model.per_example_loss(batch, 1.0, SEED, example_index=index)[1]
  elbo, _ = model.log_likelihood(batch["x"], 16, SEED, chunk_size=5,
                                 example_index=index)
  np.testing.assert_allclose(terms["elbo"].numpy(), elbo.numpy(), rtol=0,
                             atol=1e-3)
  np.testing.assert_allclose(terms["loss"].numpy(), -elbo.numpy(), rtol=0,
                             atol=1e-3)


def test_log_likelihood_k5000_on_digits_sized_test_set():
  # Bernoulli pixels keep the decoder small (64 outputs, not 64 x 17) so the
  # 2.2 million decoder passes fit the test-time budget on 2 shared cores.
  model = helpers.small_model(flow__num_flows=2, flow__amortized=True,
                              model__likelihood="bernoulli")
  x = (helpers.digits_batch(447)["x"] > 8).astype("float32")
  start = time.time()
  elbo, iw = tf.function(model.log_likelihood)(x, 5000, SEED, chunk_size=500)
  elapsed = time.time() - start
  print(f"log_likelihood K=5000 on 447x64: {elapsed:.1f} s")
  assert elbo.shape == (447,) and iw.shape == (447,)
  assert np.all(np.isfinite(iw.numpy()))
  # (iw >= elbo holds on any shared samples by Jensen's inequality; the
  # estimate's convergence to an exact log p(x) is tested in test_estimators.)
  # The K-sample ELBO agrees with the training-loss ELBO estimate.
  model.num_samples = 200
  elbo_train = model.per_example_loss({"x": x[:20]}, 1.0, SEED)[1]["elbo"]
  np.testing.assert_allclose(elbo_train.numpy().mean(),
                             elbo.numpy()[:20].mean(), rtol=0.01)


def test_fit_evaluate_predict_a_few_steps():
  for kind in ("vae", "vib"):
    model = helpers.small_model(kind, flow__num_flows=1)
    # jit_compile: XLA for one model, plain graphs for the other (faster here).
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  jit_compile="auto" if kind == "vae" else False)
    batch = helpers.digits_batch(32)
    data = tf.data.Dataset.from_tensor_slices(batch).batch(8)
    history = model.fit(data, epochs=3, verbose=0)
    losses = history.history["loss"]
    assert len(losses) == 3 and np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    logs = model.evaluate(data, verbose=0, return_dict=True)
    assert set(logs) == set(model.term_names)
    out = model.predict(batch["x"], verbose=0)
    assert out.shape == ((32, 64) if kind == "vae" else (32, 10))
  model.fit(batch["x"], batch["y"], epochs=1, batch_size=16, verbose=0)


def test_score_function_baseline_moves_only_in_training():
  model = helpers.small_model(loss__estimator="score_function",
                              loss__baseline_decay=0.9)
  batch = helpers.digits_batch()
  _, terms = model.per_example_loss(batch, 1.0, SEED)
  assert float(model.baseline) == 0.0
  _, terms = model.per_example_loss(batch, 1.0, SEED, training=True)
  # Closed-form KL: the sampled cost is -log p(x|z), the baseline tracks it.
  np.testing.assert_allclose(float(model.baseline),
                             -0.1 * terms["reconstruction"].numpy().mean(),
                             rtol=1e-5)
  assert all(v is not model.baseline for v in model.trainable_variables)
  assert any(v is model.baseline for v in model.non_trainable_variables)


def test_vae_methods_on_image_shaped_input():
  model = model_builder.build_model(helpers.small_config(flow__num_flows=2),
                                    helpers.data_info((8, 8, 1)))
  x = helpers.digits_batch(3, (8, 8, 1))["x"]
  enc = model.encode(x, SEED)
  assert {k: v.shape for k, v in enc.items()} == {
      "z_mean": (3, 4), "z_stddev": (3, 4), "z": (3, 4)}
  mean = model.decode(enc["z"]).numpy()
  assert mean.shape == (3, 8, 8, 1)
  assert mean.min() >= 0 and mean.max() <= 16
  assert model.sample(5, SEED).shape == (5, 8, 8, 1)
  assert model(x).shape == (3, 8, 8, 1)


def test_vib_predict_proba_averages_samples():
  model = helpers.small_model("vib", flow__num_flows=1)
  x = helpers.digits_batch()["x"]
  p = model.predict_proba(x, 12, SEED).numpy()
  assert p.shape == (6, 10)
  np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
  one = [model.predict_proba(x, 1, s).numpy() for s in ([0, 1], [0, 2])]
  assert not np.allclose(one[0], one[1])


def test_mixed_precision_keeps_losses_float32():
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    model = helpers.small_model(flow__num_flows=2, flow__amortized=True)
    surrogate, terms = model.per_example_loss(helpers.digits_batch(), 1.0, SEED)
    assert surrogate.dtype == tf.float32
    assert all(v.dtype == tf.float32 for v in terms.values())
    assert np.all(np.isfinite(terms["loss"].numpy()))
  finally:
    keras.mixed_precision.set_global_policy("float32")


def test_validate_batch():
  vae = helpers.small_model()
  vae.validate_batch(helpers.digits_batch())
  with pytest.raises(ValueError, match="0..16"):
    vae.validate_batch({"x": np.full((2, 64), 17.0)})
  vib = helpers.small_model("vib")
  with pytest.raises(ValueError, match="labels"):
    vib.validate_batch({"x": np.zeros((2, 64)), "y": np.array([0, 10])})
  with pytest.raises(ValueError, match="needs data_info.num_classes"):
    model_builder.build_model(helpers.small_config("vib"),
                              helpers.data_info(num_classes=None))

