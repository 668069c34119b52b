"""`vib_flows.fit_settings`: the fast `fit` recipe compiles, trains, agrees.

On TensorFlow the recipe is XLA (`jit_compile=True`) and several steps per
call of the training function, fed by a cached, shuffled, batched
(`drop_remainder`) and prefetched tf.data input. The checks:

- every built-in flow family, global and amortized, trains under the recipe
  (XLA must compile the splines' bin search, the MADE masks, the
  Householder products, the QR of the orthogonal Sylvester flow, the
  Reverse permutation), and the recipe changes speed, not results: its
  loss trajectory and final weights equal those of an eager `fit` on the
  same batches;
- the recipe does compile the step with XLA: an op that XLA cannot compile
  (`tf.numpy_function`) fails under it and trains without it.

Sizes are tiny (d = 2, 4 hidden units): XLA's compilation, about 2-4 s of
CPU a family on the 2-core VM, is most of the file's time.
"""

import keras
from keras import ops
import numpy as np
import pytest
import tensorflow as tf

from vib_flows import fit_settings
from vib_flows import flows

DIM = 2
CONTEXT_DIM = 2
# The families of the package (tests register user flows of their own).
NAMES = [n for n in flows.names()
         if flows.get_class(n).__module__.startswith("vib_flows.")]
SMALL = {"hidden_units": 4, "num_bins": 3, "num_householder": 2}


def _options(name):
  allowed = flows.option_names(name)
  return {k: v for k, v in SMALL.items() if k in allowed}


def _log_density_model(inputs, z, log_det, compile_kwargs, optimizer):
  """The model of log N(z; 0, I) + log_det (up to a constant), compiled."""
  model = keras.Model(inputs, -0.5 * ops.sum(z**2, axis=-1) + log_det)
  model.compile(optimizer=optimizer,
                loss=lambda unused_targets, log_prob: -ops.mean(log_prob),
                **compile_kwargs)
  return model


def _family_model(name, compile_kwargs):
  """A global and an amortized `name` layer, then a Reverse, compiled.

  Plain SGD, whose update adds few ops to compile. Returns the model and its
  two flow layers.
  """
  x = keras.Input((DIM,), name="x")
  context = keras.Input((CONTEXT_DIM,), name="context")
  z, log_det, layers = x, 0.0, []
  for kwargs in ({}, {"context_dim": CONTEXT_DIM}):
    layer = flows.make_stack(name, 1, dim=DIM, **kwargs, **_options(name))
    z, layer_log_det = layer(z, context=context if kwargs else None)
    log_det = log_det + layer_log_det
    layers.append(layer)
  z, _ = flows.Reverse(dim=DIM)(z)  # The permutation make_stack inserts.
  model = _log_density_model([x, context], z, log_det, compile_kwargs,
                             keras.optimizers.SGD(0.05))
  return model, layers


def _data(num=24, dim=DIM, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(num, dim)).astype("float32")
  context = rng.normal(size=(num, CONTEXT_DIM)).astype("float32")
  return x, context


def test_compile_kwargs_on_tensorflow_are_xla_and_several_steps_per_call():
  assert keras.backend.backend() == "tensorflow"
  assert fit_settings.compile_kwargs() == {
      "jit_compile": True,
      "steps_per_execution": fit_settings.DEFAULT_STEPS_PER_EXECUTION}
  assert fit_settings.compile_kwargs(7, jit_compile=False) == {
      "jit_compile": False, "steps_per_execution": 7}
  with pytest.raises(ValueError, match="steps_per_execution"):
    fit_settings.compile_kwargs(0)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_compile_kwargs_are_the_defaults_elsewhere(backend, monkeypatch):
  monkeypatch.setattr(keras.backend, "backend", lambda: backend)
  assert fit_settings.compile_kwargs() == {}


@pytest.mark.parametrize("name", NAMES)
def test_every_flow_family_trains_under_the_recipe_as_eager_fit(name):
  x, context = _data()
  # The two inputs as a list, as Keras takes them; the same batches in the
  # same order for both runs.
  dataset = fit_settings.training_dataset([x, context], x[:, 0],
                                          batch_size=12, shuffle=False)
  runs = {}
  for run, compile_kwargs in (("recipe", fit_settings.compile_kwargs()),
                              ("eager", {"run_eagerly": True})):
    keras.utils.set_random_seed(0)  # The same initial weights.
    model, layers = _family_model(name, compile_kwargs)
    before = [[w.numpy() for w in layer.trainable_weights]
              for layer in layers]
    history = model.fit(dataset, epochs=2, verbose=0, shuffle=False)
    runs[run] = (history.history["loss"], [w.numpy() for w in model.weights])
    if run == "recipe":
      assert model.jit_compile is True  # Keras falls back silently else.
      assert model.optimizer.iterations.numpy() == 2 * len(x) // 12
      for layer, weights in zip(layers, before):  # Global, then amortized.
        assert any(not np.array_equal(w.numpy(), b) for w, b in
                   zip(layer.trainable_weights, weights)), layer.name
  (recipe_loss, recipe_weights), (eager_loss, eager_weights) = (
      runs["recipe"], runs["eager"])
  assert np.all(np.isfinite(recipe_loss)), recipe_loss
  np.testing.assert_allclose(recipe_loss, eager_loss, rtol=1e-4, atol=1e-5)
  for recipe, eager in zip(recipe_weights, eager_weights):
    np.testing.assert_allclose(recipe, eager, rtol=1e-4, atol=1e-5)


class _HostOp(keras.layers.Layer):
  """The identity through `tf.numpy_function`, which XLA cannot compile."""

  def call(self, z):
    out = tf.numpy_function(lambda a: a, [z], tf.float32, stateful=False)
    return tf.ensure_shape(out, z.shape)


def _host_op_model(compile_kwargs):
  x = keras.Input((2,))
  z = keras.layers.Dense(2)(_HostOp()(x))
  return _log_density_model(x, z, 0.0, compile_kwargs,
                            keras.optimizers.SGD(0.05))


def test_the_recipe_compiles_the_step_with_xla():
  x = _data(num=16, dim=2)[0]
  dataset = fit_settings.training_dataset(x, x[:, 0], batch_size=8)
  # Without XLA the host op runs; with the recipe, XLA refuses it.
  _host_op_model(fit_settings.compile_kwargs(jit_compile=False)).fit(
      dataset, epochs=1, verbose=0, shuffle=False)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="unsupported operations .* XLA"):
    _host_op_model(fit_settings.compile_kwargs()).fit(
        dataset, epochs=1, verbose=0, shuffle=False)


def test_training_dataset_has_static_full_batches_reshuffled_each_epoch():
  x = np.arange(20, dtype="float32")[:, None] * np.ones((1, 2), "float32")
  dataset = fit_settings.training_dataset(x, x[:, 0], batch_size=8, seed=0)
  # drop_remainder: every batch has the static batch size (one XLA program).
  assert dataset.element_spec[0].shape.as_list() == [8, 2]
  assert dataset.element_spec[1].shape.as_list() == [8]
  assert int(dataset.cardinality()) == 2
  epochs = [np.concatenate([y.numpy() for _, y in dataset]) for _ in range(3)]
  for order in epochs:
    assert len(order) == 16 and len(set(order.tolist())) == 16
    assert set(order.tolist()) <= set(range(20))
  assert any(not np.array_equal(epochs[0], other) for other in epochs[1:])
  in_order = fit_settings.training_dataset(x, None, batch_size=8,
                                           shuffle=False)
  np.testing.assert_array_equal(
      np.concatenate([b.numpy() for b in in_order])[:, 0], np.arange(16))


@pytest.mark.parametrize("batch_size", [0, 21])
def test_training_dataset_refuses_impossible_batch_sizes(batch_size):
  x = np.zeros((20, 2), "float32")
  with pytest.raises(ValueError, match="batch_size must be in 1..20"):
    fit_settings.training_dataset(x, batch_size=batch_size)
