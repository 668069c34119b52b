"""The fused Adam and Adamax against the papers' equations and Keras' update.

In float64 the fused optimizers follow a NumPy transcription of Kingma & Ba
(2015) Algorithm 1 and Section 7.1 to rounding (1e-12), while a slip in the
update (the bias correction of step t taken at t - 1, b1 and b2 swapped, the
learning rate applied twice) moves the weights by far more. Keras' own update
is not the float64 reference: it rounds its Python-float constants (1 - b1,
...) to float32, about 1e-8 off in float64. In float32, the training dtype,
fused and Keras agree to float32 rounding.
"""

import json
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tests import warm_processes
from vib_flows import optimizers

PAIRS = [
    (optimizers.FusedAdam, keras.optimizers.Adam),
    (optimizers.FusedAdamax, keras.optimizers.Adamax),
]
SHAPES = [(7, 5), (5,), (3, 4, 2)]
# A learning rate float32 holds exactly (Keras keeps it in a float32 variable).
SETTINGS = {"learning_rate": 0.0625, "beta_1": 0.8, "beta_2": 0.95,
            "epsilon": 1e-6}


def _problem(steps, seed=0):
  """Initial weights and `steps` lists of gradients of mixed magnitudes."""
  rng = np.random.default_rng(seed)
  initial = [rng.normal(size=s) for s in SHAPES]
  grads = [[rng.normal(size=s) * 10.0 ** rng.integers(-3, 2) for s in SHAPES]
           for _ in range(steps)]
  return initial, grads


def _trajectory(optimizer, dtype="float64", steps=6, jit_compile=None):
  """Weights after each of `steps` updates by `optimizer`."""
  initial, grads = _problem(steps)
  variables = [keras.Variable(w, dtype=dtype) for w in initial]
  optimizer.build(variables)
  def apply(g):
    optimizer.apply(g, variables)

  if jit_compile is not None:
    apply = tf.function(apply, jit_compile=jit_compile)
  out = []
  for g in grads:
    apply([tf.constant(x, dtype) for x in g])
    out.append([v.numpy().astype(np.float64) for v in variables])
  return out


def _numpy_trajectory(kind, steps=6, learning_rate=SETTINGS["learning_rate"],
                      beta_1=SETTINGS["beta_1"], beta_2=SETTINGS["beta_2"],
                      epsilon=SETTINGS["epsilon"]):
  """Kingma & Ba (2015): Adam (Algorithm 1) or AdaMax (Section 7.1)."""
  weights, grads = _problem(steps)
  m = [np.zeros_like(w) for w in weights]
  v = [np.zeros_like(w) for w in weights]
  out = []
  for t, g_t in enumerate(grads, start=1):
    for i, g in enumerate(g_t):
      m[i] = beta_1 * m[i] + (1 - beta_1) * g
      if kind == "adam":
        v[i] = beta_2 * v[i] + (1 - beta_2) * g * g
        rate = learning_rate * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        weights[i] = weights[i] - rate * m[i] / (np.sqrt(v[i]) + epsilon)
      else:
        v[i] = np.maximum(beta_2 * v[i], np.abs(g))
        rate = learning_rate / (1 - beta_1**t)
        weights[i] = weights[i] - rate * m[i] / (v[i] + epsilon)
    out.append([w.copy() for w in weights])
  return out


def _max_difference(a, b):
  return max(float(np.max(np.abs(x - y)))
             for step_a, step_b in zip(a, b) for x, y in zip(step_a, step_b))


@pytest.mark.parametrize("fused, kind", [(optimizers.FusedAdam, "adam"),
                                         (optimizers.FusedAdamax, "adamax")])
@pytest.mark.parametrize("jit_compile", [None, False, True])
def test_fused_update_follows_the_paper_in_float64(fused, kind, jit_compile):
  ours = _trajectory(fused(**SETTINGS), jit_compile=jit_compile)
  assert _max_difference(ours, _numpy_trajectory(kind)) < 1e-12
  # The test's own power: wrong updates are far from the paper's.
  initial = [_problem(1)[0]]
  assert _max_difference(ours[-1:], initial) > 0.1
  slips = [
      _numpy_trajectory(kind, beta_1=SETTINGS["beta_2"],
                        beta_2=SETTINGS["beta_1"]),
      _numpy_trajectory(kind, learning_rate=SETTINGS["learning_rate"] * 1.01),
  ]
  for slip in slips:
    assert _max_difference(ours, slip) > 1e-4


@pytest.mark.parametrize("fused, reference", PAIRS)
@pytest.mark.parametrize("jit_compile", [None, True])
def test_fused_update_is_keras_update_in_float32(fused, reference,
                                                 jit_compile):
  ours = _trajectory(fused(**SETTINGS), "float32", jit_compile=jit_compile)
  theirs = _trajectory(reference(**SETTINGS), "float32",
                       jit_compile=jit_compile)
  assert _max_difference(ours, theirs) < 1e-5


@pytest.mark.parametrize("fused, reference", PAIRS)
def test_update_is_one_fused_kernel_per_variable(fused, reference):
  variables = [keras.Variable(np.ones(s), dtype="float32") for s in SHAPES]
  grads = [tf.ones(s) for s in SHAPES]
  kernels = {"ResourceApplyAdam", "ResourceApplyAdaMax"}

  def ops_of(optimizer):
    optimizer.build(variables)
    graph = tf.function(
        lambda g: optimizer.apply(g, variables)).get_concrete_function(
            grads).graph
    names = [op.type for op in graph.get_operations()]
    for function in graph.as_graph_def().library.function:
      names += [node.op for node in function.node_def]
    return names

  assert sum(op in kernels for op in ops_of(fused())) == len(SHAPES)
  assert not any(op in kernels for op in ops_of(reference()))


def test_amsgrad_uses_keras_update():
  kwargs = dict(SETTINGS, amsgrad=True)
  ours = _trajectory(optimizers.FusedAdam(**kwargs))
  theirs = _trajectory(keras.optimizers.Adam(**kwargs))
  assert _max_difference(ours, theirs) == 0.0


@pytest.mark.parametrize("fused, reference", PAIRS)
def test_config_round_trip(fused, reference):
  optimizer = fused(learning_rate=3e-3, beta_1=0.85, global_clipnorm=2.0)
  restored = keras.optimizers.deserialize(
      keras.optimizers.serialize(optimizer))
  assert type(restored) is fused
  assert restored.get_config() == optimizer.get_config()
  assert set(reference().get_config()) == set(optimizer.get_config())


@pytest.mark.parametrize("fused, reference", PAIRS)
def test_checkpoint_of_keras_optimizer_restores_into_fused(fused, reference,
                                                           tmp_path):
  # Runs trained before the fused optimizers resume from their checkpoints:
  # the step count and every slot (m, v / u) come back.
  initial, grads = _problem(3)

  def trained(cls):
    variables = [keras.Variable(w, dtype="float32") for w in initial]
    optimizer = cls(**SETTINGS)
    optimizer.build(variables)
    for g in grads:
      optimizer.apply([tf.constant(x, tf.float32) for x in g], variables)
    return variables, optimizer

  variables, optimizer = trained(reference)
  path = tf.train.Checkpoint(optimizer=optimizer, weights=variables).write(
      str(tmp_path / "ckpt"))
  fresh = [keras.Variable(np.zeros_like(w), dtype="float32") for w in initial]
  restored = fused(**SETTINGS)
  restored.build(fresh)
  tf.train.Checkpoint(optimizer=restored, weights=fresh).read(
      path).assert_existing_objects_matched()
  assert int(restored.iterations.numpy()) == len(grads)
  assert len(restored.variables) == len(optimizer.variables)
  for ours, theirs in zip(restored.variables, optimizer.variables):
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
  assert any(np.any(v.numpy() != 0) for v in restored.variables[2:])


@pytest.mark.slow
def test_fused_update_on_every_replica_of_a_mirrored_strategy():
  # The fused kernels write through the variables' handles; under a mirrored
  # strategy each replica's copy must get the update, as with Keras' update.
  out = warm_processes.run(
      [sys.executable, os.path.join("tests", "scripts", "fused_update.py"),
       helpers.ROOT],
      cwd=helpers.ROOT, env=helpers.env(), capture_output=True, text=True,
      timeout=600,
  )
  assert out.returncode == 0, out.stderr[-4000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  for name, r in result.items():
    assert r["replicas"] == 2, name
    assert r["moved"] > 1e-3, name
    assert r["max_difference"] < 1e-5, name


def test_loss_scale_optimizer_wraps_the_fused_update():
  # runtime.mixed_precision wraps the optimizer in Keras' LossScaleOptimizer,
  # which unscales the gradients before the inner (fused) update.
  from vib_flows.app import optimizer_builder  # pylint: disable=g-import-not-at-top
  config = helpers.config("test")
  config.optimizer.learning_rate = SETTINGS["learning_rate"]
  wrapped = optimizer_builder.make_optimizer(config.optimizer,
                                             mixed_precision=True)
  assert isinstance(wrapped, keras.optimizers.LossScaleOptimizer)
  assert type(wrapped.inner_optimizer) is optimizers.FusedAdam
  scale = float(wrapped.scale_loss(tf.constant(1.0)).numpy())
  initial, grads = _problem(2)

  def run(optimizer, factor):
    variables = [keras.Variable(w, dtype="float32") for w in initial]
    optimizer.build(variables)
    for g in grads:
      optimizer.apply([tf.constant(x * factor, tf.float32) for x in g],
                      variables)
    return [[v.numpy().astype(np.float64) for v in variables]]

  plain = run(optimizers.FusedAdam(
      learning_rate=SETTINGS["learning_rate"]), 1.0)
  assert _max_difference(plain, [initial]) > 0.05  # The weights moved.
  assert _max_difference(run(wrapped, scale), plain) < 1e-6


def test_optimizer_names_live_in_one_list():
  assert optimizers.names() == ("adam", "adamax", "sgd", "rmsprop")
  assert type(optimizers.get("adam", learning_rate=0.1)) is (
      optimizers.FusedAdam)
  assert type(optimizers.get("adamax")) is optimizers.FusedAdamax
  assert type(optimizers.get("sgd")) is keras.optimizers.SGD
  with pytest.raises(ValueError, match="valid: adam, adamax, sgd, rmsprop"):
    optimizers.get("lion")
