"""The flow-family benchmark: hand-written flows equal the package's; its rows.

Each family's hand-written TensorFlow stack (`flow_families_tf`), given the
package layers' weights, must compute the package's f(x), log|det J_f(x)|
and loss gradients. Both run in float64 with random weights (the package's
initial flows are near the identity, where a wrong log-det can go unseen)
and points out to |x| ~ 8, beyond the spline's bound of 5: the two sides
differ only in the order of their floating-point operations, a few ulps
times the condition of the maths (observed: <= 1e-14), so a relative
tolerance of 1e-10 leaves a margin of four digits and still fails on any
error of the maths.
"""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from experiments.benchmarks import flow_families
from experiments.benchmarks import flow_families_tf

# Three layers: ordered families reverse after the first two, not the last.
SIZES = dataclasses.replace(flow_families.TINY, num_layers=3)
# Two: a reversal after the last layer too (`flow_families_tf.reversals`).
EVEN = dataclasses.replace(flow_families.TINY, num_layers=2)
TOLERANCE = {"rtol": 1e-10, "atol": 1e-10}


def _random_stack(case, sizes=SIZES):
  stack = flow_families.package_stack(case, sizes, dtype="float64")
  rng = np.random.default_rng(0)
  for w in stack.trainable_weights:
    w.assign(rng.normal(scale=0.5, size=tuple(w.shape)))
  return stack


def _points():
  rng = np.random.default_rng(1)
  return tf.constant(rng.normal(scale=2.5, size=(SIZES.batch_size,
                                                 SIZES.dim)))


def _hand(case, stack, sizes=SIZES, variables=False):
  make = tf.Variable if variables else tf.constant
  layers = [{k: make(v) for k, v in layer.items()}
            for layer in flow_families.hand_weights(case, stack)]
  return layers, flow_families.hand_flow(case, sizes, layers)


@pytest.mark.parametrize("case", flow_families.CASES)
def test_hand_written_flow_gives_the_packages_output_and_log_det(case):
  stack = _random_stack(case)
  x = _points()
  u, log_det = flow_families.package_flow(case, stack)(x)
  _, hand = _hand(case, stack)
  hand_u, hand_log_det = hand(x)
  assert hand_u.dtype == tf.float64
  np.testing.assert_allclose(hand_u, u, **TOLERANCE)
  np.testing.assert_allclose(hand_log_det, log_det, **TOLERANCE)
  # Not a vacuous check: the flow moves the points and has a log-det.
  assert np.max(np.abs(u - x)) > 0.1 and np.max(np.abs(log_det)) > 0.1


def _package_gradients(case, stack, x):
  with tf.GradientTape() as tape:
    loss = flow_families.negative_log_likelihood(
        *flow_families.package_flow(case, stack)(x))
  layers = flow_families.weighted_layers(stack)
  grads = tape.gradient(loss, [layer.trainable_weights for layer in layers])
  named = [{w.name: g for w, g in zip(layer.trainable_weights, layer_grads)}
           for layer, layer_grads in zip(layers, grads)]
  # The weights' re-layout is a permutation: it maps the gradients too.
  return loss, [flow_families_tf.hand_layout(case, g) for g in named]


@pytest.mark.parametrize("case", flow_families.CASES)
def test_hand_written_loss_gradients_equal_the_packages(case):
  stack = _random_stack(case, EVEN)
  x = _points()
  loss, expected = _package_gradients(case, stack, x)
  layers, hand = _hand(case, stack, EVEN, variables=True)
  with tf.GradientTape() as tape:
    hand_loss = flow_families.negative_log_likelihood(*hand(x))
  grads = tape.gradient(hand_loss, layers)
  np.testing.assert_allclose(hand_loss, loss, **TOLERANCE)
  assert [set(g) for g in grads] == [set(g) for g in expected]
  for layer_grads, layer_expected in zip(grads, expected):
    for name, g in layer_grads.items():
      np.testing.assert_allclose(g, layer_expected[name], err_msg=name,
                                 **TOLERANCE)
      assert np.any(g != 0), name


def test_made_masks_are_autoregressive():
  first, second, output = flow_families_tf.made_masks(4, 8)
  # Output i (either half) reaches input j only through a path: j < i.
  paths = first @ second @ output
  reach = paths[:, :4] > 0
  assert np.array_equal(reach, paths[:, 4:] > 0)
  assert np.array_equal(reach, np.triu(np.ones((4, 4), bool), k=1))


def test_goal_is_judged_on_the_package_over_hand_time():
  rows = [{"group": "families", "case": "iaf", "xla": True,
           "slowdown": 1.29, "goal_met": True},
          {"group": "families", "case": "maf", "xla": False,
           "slowdown": 1.31, "goal_met": False},
          {"group": "families", "case": "hand_iaf", "xla": True}]
  assert [(t["value"], t["met"]) for t in flow_families.targets(rows)] == [
      (1.29, True), (1.31, False)]
  assert flow_families.targets(rows)[0]["bound"] == "<= 1.3"


def test_tiny_run_prints_a_row_per_family(capsys):
  rows = flow_families.main(["--tiny", "--xla=off", "--repeats=1",
                             "--steps=1", "--warmup=1"])
  out = capsys.readouterr().out
  table = [line for line in out.splitlines() if line.startswith("| ")]
  assert [line.split("|")[1].strip() for line in table[1:]] == list(
      flow_families.CASES)
  packages = [r for r in rows if r["case"] in flow_families.CASES]
  assert len(packages) == len(flow_families.CASES)
  for row in packages:
    assert row["ratio_of"] == f"hand_{row['case']}"
    assert row["slowdown"] == pytest.approx(1 / row["ratio"])
    assert row["ms_per_step"] > 0
  assert "Provenance: " in out and "flow_families --tiny" in out
