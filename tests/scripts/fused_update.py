"""Fused and Keras Adam/Adamax steps under "mirrored" (2 logical CPUs).

Applies the same all-reduced gradients with the fused optimizer and Keras'
own to copies of the same variables, and prints a JSON dict {optimizer:
{"replicas", "moved", "max_difference"}} on the last line: the largest
difference between the two, over every replica's copy of every variable.
Run in its own process: the logical CPUs must exist before TensorFlow starts.
"""

import json
import sys

sys.path.insert(0, sys.argv[1])  # The repository root.

from tests import helpers  # pylint: disable=g-import-not-at-top  # noqa: E402

helpers.two_cpu_config("mirrored")  # Creates the logical CPUs first.

import keras  # pylint: disable=g-import-not-at-top  # noqa: E402
import numpy as np  # pylint: disable=g-import-not-at-top  # noqa: E402
import tensorflow as tf  # pylint: disable=g-import-not-at-top  # noqa: E402

from vib_flows import optimizers  # pylint: disable=g-import-not-at-top  # noqa: E402

SHAPES = [(6, 4), (4,)]
strategy = tf.distribute.MirroredStrategy(
    [d.name for d in tf.config.list_logical_devices("CPU")])
rng = np.random.default_rng(0)
initial = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
grads = [[rng.normal(size=s).astype(np.float32) for s in SHAPES]
         for _ in range(3)]



def make_step(optimizer, variables):
  """A tf.function: one update of `variables` by `optimizer` on each replica."""

  def replica_step(gradient):
    # The gradient is `gradient` on every replica; the optimizer all-reduces
    # (sums) it.
    with tf.GradientTape() as tape:
      loss = tf.add_n([tf.reduce_sum(v * c)
                       for v, c in zip(variables, gradient)])
    optimizer.apply(tape.gradient(loss, variables), variables)

  @tf.function
  def step(gradient):
    strategy.run(replica_step, args=(gradient,))

  return step


result = {}
for fused, reference in ((optimizers.FusedAdam, keras.optimizers.Adam),
                         (optimizers.FusedAdamax, keras.optimizers.Adamax)):
  finals = []
  for cls in (fused, reference):
    with strategy.scope():
      variables = [keras.Variable(v) for v in initial]
      optimizer = cls(learning_rate=0.1)
      optimizer.build(variables)

    step = make_step(optimizer, variables)
    for gradient in grads:
      step([tf.constant(x) for x in gradient])
    finals.append([[c.numpy() for c in v.value.values] for v in variables])
  differences = [np.max(np.abs(a - b)) for va, vb in zip(*finals)
                 for a, b in zip(va, vb)]
  moved = max(float(np.max(np.abs(c - init))) for v, init
              in zip(finals[1], initial) for c in v)
  result[fused.__name__] = {
      "replicas": strategy.num_replicas_in_sync,
      "moved": moved,
      "max_difference": float(max(differences)),
  }
print(json.dumps(result))
