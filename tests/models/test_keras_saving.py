"""Models built in Python, trained with `fit`, saved as .keras and reloaded.

A reloaded VAE / VIB has the same configuration and weights, gives the same
deterministic outputs, and continues training exactly as the original does.
`fit` takes the trainer's step (`models.scaled_loss`, `models.step_seed`).
"""

import inspect
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from vib_flows import models
from vib_flows import objectives
from vib_flows.app import model_builder

SEED = tf.constant([3, 4], tf.int32)


def _config(kind, **overrides):
  """Small networks and non-default loss settings (all must survive a save)."""
  return helpers.small_config(kind, **{
      "seed": 7, "model.latent_dim": 3, "model.prior": "mixture",
      "flow.name": "planar", "flow.num_flows": 2, "flow.amortized": True,
      "flow.hidden_units": 64, "loss.beta": 0.7, "loss.warmup_steps": 3,
      "loss.num_samples": 2, "loss.baseline_decay": 0.9,
      "eval.vib_num_samples": 5, **overrides})


def _data(n=32):
  batch = helpers.digits_batch(n)
  return batch["x"], batch["y"]


def _build(config):
  return model_builder.build_model(config, helpers.data_info())


def _fit(model, kind, epochs):
  """`epochs` epochs of two steps (32 examples, batches of 16)."""
  x, y = _data()
  data = (x,) if kind == "vae" else (x, y)
  model.fit(*data, batch_size=16, epochs=epochs, shuffle=False, verbose=0)


def _constructor_arguments(cls):
  """Named arguments of cls and the keyword arguments it passes to the base."""
  own = inspect.signature(cls.__init__).parameters.values()
  base = inspect.signature(models.LatentVariableModel.__init__).parameters
  names = {p.name for p in own if p.kind == p.POSITIONAL_OR_KEYWORD}
  names.update(p.name for p in base.values()
               if p.kind == p.POSITIONAL_OR_KEYWORD
               and p.default is not p.empty)
  return names - {"self"}


def _outputs(model, kind):
  """Deterministic outputs (explicit seeds) of the model on fixed data."""
  x, y = _data(8)
  out = dict(model.encode(x, SEED))
  _, terms = model.per_example_loss({"x": x, "y": y}, 0.5, SEED)
  out.update({f"term_{k}": v for k, v in terms.items()})
  if kind == "vae":
    out["elbo"], out["log_likelihood"] = model.log_likelihood(x, 6, SEED)
    out["decode"] = model.decode(out["z"])
  else:
    out["proba"] = model.predict_proba(x, 4, SEED)
  return {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.parametrize("kind,estimator", [("vae", "pathwise"),
                                            ("vib", "score_function")])
def test_fit_save_load_gives_the_same_model(kind, estimator, tmp_path):
  model = _build(_config(kind, loss__estimator=estimator))
  # Eager steps: tracing fit would take most of this test's time.
  model.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)
  _fit(model, kind, epochs=2)
  path = str(tmp_path / f"{kind}.keras")
  model.save(path)
  loaded = keras.saving.load_model(path)

  assert type(loaded) is type(model)
  config = model.get_config()
  assert _constructor_arguments(type(model)) <= set(config)

  def as_json(c):
    return json.loads(json.dumps(c))  # Tuples become lists.

  assert as_json(loaded.get_config()) == as_json(config)
  for name in _constructor_arguments(type(model)):
    value = getattr(model, name)
    if not isinstance(value, keras.layers.Layer):
      assert getattr(loaded, name) == value, name
  for a, b in zip(model.weights, loaded.weights, strict=True):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
  expected, actual = _outputs(model, kind), _outputs(loaded, kind)
  for key, value in expected.items():
    np.testing.assert_array_equal(actual[key], value, err_msg=key)

  # Training continues where it stopped: same optimizer state, step, noise
  # and score-function baseline, so the same weights after two more steps.
  assert int(loaded.optimizer.iterations) == 4
  _fit(model, kind, epochs=1)
  _fit(loaded, kind, epochs=1)
  assert int(loaded.optimizer.iterations) == 6
  for a, b in zip(model.weights, loaded.weights, strict=True):
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6, atol=1e-7,
                               err_msg=a.path)


def test_fit_step_is_the_trainers_step():
  """One fit step equals the trainer's.

  Mean surrogate over the global batch, noise seeded by
  fold_in(fold_in([seed, 0], step), replica), beta warm-up.
  """
  config = _config("vae", loss__warmup_steps=0, flow__num_flows=0,
                   model__prior="standard_normal")
  model = _build(config)
  reference = _build(config)
  reference.set_weights(model.get_weights())
  # A traced step (as fit runs by default). SGD: the update is proportional
  # to the loss scale (Adam's is not).
  model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
  x, _ = _data(16)
  model.fit(x, batch_size=16, epochs=1, shuffle=False, verbose=0)

  base = tf.constant([config.seed, 0], tf.int32)
  step = tf.constant(0, tf.int64)
  seed = tf.random.experimental.stateless_fold_in(
      tf.random.experimental.stateless_fold_in(base, step), 0)
  beta = objectives.beta_schedule(step, config.loss.beta, 0)
  with tf.GradientTape() as tape:
    surrogate, _ = reference.per_example_loss({"x": x}, beta, seed,
                                              training=True)
    loss = tf.reduce_mean(surrogate)
  grads = tape.gradient(loss, reference.trainable_variables)
  keras.optimizers.SGD(0.1).apply(grads, reference.trainable_variables)
  for a, b in zip(model.weights, reference.weights, strict=True):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6,
                               err_msg=a.path)
