"""Model-level tests of vib_flows.models (VAE, VIB, build_model)."""

import math
import time
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from configs import default
from vib_flows import flows
from vib_flows import models
from vib_flows.app import model_builder

SEED = tf.constant([1, 2], tf.int32)


def _config(kind="vae", **overrides):
  config = default.get_config()
  config.model.kind = kind
  config.model.latent_dim = 4
  config.model.encoder_hidden = (16,)
  config.model.decoder_hidden = (16,)
  config.model.context_dim = 8
  config.flow.hidden_units = 8
  config.model.prior_components = 3
  for key, value in overrides.items():
    section, field = key.split("__")
    config[section][field] = value
  return config


def _info(shape=(64,)):
  return types.SimpleNamespace(input_shape=shape, num_classes=10,
                               num_levels=17)


def _batch(n=6, shape=(64,), seed=0):
  rng = np.random.default_rng(seed)
  return {"x": rng.integers(0, 17, size=(n,) + shape).astype("float32"),
          "y": rng.integers(0, 10, size=n).astype("int32")}


@pytest.mark.parametrize("kind", ["vae", "vib"])
@pytest.mark.parametrize("estimator", ["pathwise", "score_function"])
@pytest.mark.parametrize("num_flows,amortized", [(0, False), (2, True)])
def test_per_example_loss_shapes_and_keys(kind, estimator, num_flows,
                                          amortized):
  model = model_builder.build_model(
      _config(kind, loss__estimator=estimator, flow__num_flows=num_flows,
              flow__amortized=amortized, loss__num_samples=3), _info())
  assert isinstance(model, models.VAE if kind == "vae" else models.VIB)
  surrogate, terms = model.per_example_loss(_batch(), 0.5, SEED)
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
  batch = _batch(4)
  # The package's flows: other tests register flows of their own (some
  # deliberately incomplete) in the same process.
  package_flows = [n for n in flows.names()
                   if flows.get_class(n).__module__.startswith("vib_flows.")]
  assert len(package_flows) >= 9
  for name in package_flows:
    model = model_builder.build_model(
        _config(flow__name=name, flow__num_flows=2, flow__amortized=True),
        _info())
    _, terms = model.per_example_loss(batch, 1.0, SEED)
    assert np.all(np.isfinite(terms["loss"].numpy())), name
  for likelihood, x in (("bernoulli", (batch["x"] > 8).astype("float32")),
                        ("gaussian", batch["x"] / 16.0)):
    model = model_builder.build_model(_config(model__likelihood=likelihood),
                                      _info())
    _, terms = model.per_example_loss({"x": x}, 1.0, SEED)
    assert np.all(np.isfinite(terms["loss"].numpy())), likelihood
  for prior in ("mixture", "flow"):
    model = model_builder.build_model(_config(model__prior=prior), _info())
    assert not model.closed_form_kl
    _, terms = model.per_example_loss(batch, 1.0, SEED)
    assert np.all(np.isfinite(terms["kl"].numpy())), prior


def test_flow_config_fields_reach_the_layers():
  model = model_builder.build_model(
      _config(flow__name="iaf", flow__num_flows=2, flow__forget_bias=5.0,
              flow__hidden_units=12), _info())
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
    model_builder.build_model(_config(**{field: value}), _info())


def test_seeds_repeat_and_differ():
  model = model_builder.build_model(
      _config(flow__num_flows=2, flow__amortized=True), _info())
  batch = _batch()
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
  w1 = model_builder.build_model(_config(), _info()).get_weights()
  keras.utils.set_random_seed(5)
  w2 = model_builder.build_model(_config(), _info()).get_weights()
  for u, v in zip(w1, w2):
    np.testing.assert_array_equal(u, v)


def _grads(tape, target, variables):
  return [np.zeros(v.shape) if g is None else g.numpy()
          for g, v in zip(tape.gradient(target, variables), variables)]


def test_vib_beta_zero_gradient_is_cross_entropy_gradient():
  model = model_builder.build_model(
      _config("vib", flow__num_flows=2, flow__amortized=True,
              model__prior="mixture"), _info())
  batch = _batch(8)
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
  batch = _batch(5)
  config = _config(flow__name="planar", flow__num_flows=0,
                   loss__force_monte_carlo_kl=True)
  flowless = model_builder.build_model(config, _info())
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
  closed = model_builder.build_model(
      _config(flow__num_flows=0), _info())
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
  model = model_builder.build_model(
      _config(flow__name="iaf", flow__num_flows=2, flow__amortized=True,
              model__prior="mixture", loss__num_samples=16), _info())
  rng = np.random.default_rng(3)
  for variable in model.flow.weights:
    variable.assign(rng.normal(scale=0.3, size=variable.shape))
  _, log_det = model.flow(tf.random.normal([64, 4], seed=1),
                          context=tf.random.normal([64, 8], seed=2))
  assert np.mean(np.abs(log_det.numpy())) > 0.5  # The flow matters.
  batch = _batch(5)
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
  model = model_builder.build_model(
      _config(flow__num_flows=2, flow__amortized=True,
              model__likelihood="bernoulli"), _info())
  x = (_batch(447)["x"] > 8).astype("float32")
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
    model = model_builder.build_model(
        _config(kind, flow__num_flows=1), _info())
    # jit_compile: XLA for one model, plain graphs for the other (faster here).
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  jit_compile="auto" if kind == "vae" else False)
    batch = _batch(32)
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
  model = model_builder.build_model(_config(loss__estimator="score_function",
                                     loss__baseline_decay=0.9), _info())
  batch = _batch()
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
  model = model_builder.build_model(_config(flow__num_flows=2),
                                    _info((8, 8, 1)))
  x = _batch(3, (8, 8, 1))["x"]
  enc = model.encode(x, SEED)
  assert {k: v.shape for k, v in enc.items()} == {
      "z_mean": (3, 4), "z_stddev": (3, 4), "z": (3, 4)}
  mean = model.decode(enc["z"]).numpy()
  assert mean.shape == (3, 8, 8, 1)
  assert mean.min() >= 0 and mean.max() <= 16
  assert model.sample(5, SEED).shape == (5, 8, 8, 1)
  assert model(x).shape == (3, 8, 8, 1)


def test_vib_predict_proba_averages_samples():
  model = model_builder.build_model(_config("vib", flow__num_flows=1), _info())
  x = _batch()["x"]
  p = model.predict_proba(x, 12, SEED).numpy()
  assert p.shape == (6, 10)
  np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
  one = [model.predict_proba(x, 1, s).numpy() for s in ([0, 1], [0, 2])]
  assert not np.allclose(one[0], one[1])


def test_mixed_precision_keeps_losses_float32():
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    model = model_builder.build_model(
        _config(flow__num_flows=2, flow__amortized=True), _info())
    surrogate, terms = model.per_example_loss(_batch(), 1.0, SEED)
    assert surrogate.dtype == tf.float32
    assert all(v.dtype == tf.float32 for v in terms.values())
    assert np.all(np.isfinite(terms["loss"].numpy()))
  finally:
    keras.mixed_precision.set_global_policy("float32")


def test_validate_batch():
  vae = model_builder.build_model(_config(), _info())
  vae.validate_batch(_batch())
  with pytest.raises(ValueError, match="0..16"):
    vae.validate_batch({"x": np.full((2, 64), 17.0)})
  vib = model_builder.build_model(_config("vib"), _info())
  with pytest.raises(ValueError, match="labels"):
    vib.validate_batch({"x": np.zeros((2, 64)), "y": np.array([0, 10])})
  with pytest.raises(ValueError, match="needs data_info.num_classes"):
    model_builder.build_model(_config("vib"), types.SimpleNamespace(
        input_shape=(64,), num_classes=None, num_levels=17))


def test_evaluated_models_are_freed():
  """Evaluate's per-model tf.function cache must not keep models alive.

  A sweep evaluates dozens of models in one process.
  """
  import gc  # pylint: disable=g-import-not-at-top
  import weakref  # pylint: disable=g-import-not-at-top

  from vib_flows.app import evaluate  # pylint: disable=g-import-not-at-top
  config = _config()
  model = model_builder.build_model(config, _info())
  split = types.SimpleNamespace(x=_batch(4)["x"], y=None)
  terms = evaluate.mean_terms(model, split, config)
  assert np.isfinite(terms["loss"])
  ref = weakref.ref(model)
  del model
  gc.collect()
  assert ref() is None


def _vib_ignoring_z(log_probs, train_y, test_y):
  """A VIB whose classifier ignores z: p(y|z) = softmax(log_probs) for any z.

  Returns (model, config, splits) for `evaluate.test_metrics`.
  """
  num_classes = len(log_probs)
  config = _config("vib", model__decoder_hidden=())
  info = types.SimpleNamespace(input_shape=(64,), num_classes=num_classes,
                               num_levels=17, preprocess="levels")
  model = model_builder.build_model(config, info)
  model.classifier.head.kernel.assign(tf.zeros_like(model.classifier.head.kernel))
  model.classifier.head.bias.assign(log_probs)

  def split(y, seed):
    x = _batch(len(y), seed=seed)["x"]
    return types.SimpleNamespace(x=x, y=np.asarray(y, np.int64))

  splits = types.SimpleNamespace(train=split(train_y, 1), test=split(test_y, 2),
                                 info=info)
  return model, config, splits


def _entropy_nats(y, num_classes):
  p = np.bincount(y, minlength=num_classes) / len(y)
  p = p[p > 0]
  return float(-(p * np.log(p)).sum())


def test_izy_lower_bound_of_a_classifier_that_ignores_z():
  """I(Z;Y) >= H(Y) - CE (Alemi et al. 2017) on the test split.

  A classifier that ignores z and predicts the label marginal p has
  CE = H(Y) exactly, so the bound is 0 (= I(Z;Y) of such a model); a uniform
  one has CE = log C and the bound H(Y) - log C < 0. Catches H(Y) in bits,
  the sign of the bound, and a CE not averaged as the metric says.
  """
  from vib_flows.app import evaluate  # pylint: disable=g-import-not-at-top
  labels = np.repeat([0, 1, 2, 3], [8, 4, 2, 2])  # H = 1.21 nats, log 4 = 1.39.
  h_y = _entropy_nats(labels, 4)
  marginal = np.log(np.bincount(labels) / len(labels)).astype(np.float32)
  for log_probs, want_ce in ((marginal, h_y), (np.zeros(4, np.float32),
                                               math.log(4))):
    model, config, splits = _vib_ignoring_z(log_probs, labels,
                                            np.roll(labels, 5))
    metrics = evaluate.test_metrics(model, splits, config)
    np.testing.assert_allclose(metrics["label_entropy"], h_y, rtol=1e-6)
    np.testing.assert_allclose(metrics["test_cross_entropy"], want_ce,
                               rtol=1e-5)
    np.testing.assert_allclose(metrics["test_izy_lower"], h_y - want_ce,
                               atol=1e-5)


def test_izy_lower_uses_the_test_labels():
  """Training labels balanced, test labels all one class: no positive bound.

  On the test split Y is constant, so I(Z;Y) = 0 and no lower bound of it
  can be positive.
  """
  from vib_flows.app import evaluate  # pylint: disable=g-import-not-at-top
  log_probs = np.array([0.0, -30.0, -30.0, -30.0], np.float32)
  model, config, splits = _vib_ignoring_z(
      log_probs, train_y=np.arange(16) % 4, test_y=np.zeros(16, np.int64))
  metrics = evaluate.test_metrics(model, splits, config)
  assert metrics["test_cross_entropy"] < 1e-6
  np.testing.assert_allclose(metrics["test_izy_lower"], 0.0, atol=1e-5)
