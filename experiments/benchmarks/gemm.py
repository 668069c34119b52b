"""The roofline: the GEMMs of a step, timed alone.

A runner of the `timing` protocol whose `step()` runs exactly the matrix
products of a `flops.step_gemms` list (operand shapes and transpose flags
as TensorFlow's MatMul kernel and its gradient see them), each on its own
fixed random operands, in one compiled function, and waits for them. Its
time is the least any step needing those products could take at the
machine's GEMM throughput; its GFLOP/s (`flops.total_flops` / time) is that
throughput for the step's shapes.

`TFGemms`: `tf.matmul` in one `tf.function` (XLA on or off: TensorFlow's
own CPU kernels and XLA's differ). `JAXGemms`: `jnp.dot` (`.T` operands) in
one `jax.jit` function. Every product's full output is returned (nothing is
pruned, no reduction is added).
"""

import numpy as np

from experiments.benchmarks import flops


def _operands(gemms, seed):
  rng = np.random.default_rng(seed)
  out = []
  for g in gemms:
    a_shape, b_shape = flops.operand_shapes(g)
    out.append((rng.standard_normal(a_shape).astype(np.float32),
                rng.standard_normal(b_shape).astype(np.float32)))
  return out


class _Gemms:
  """What both runners share: the products, their FLOPs and flags."""

  def __init__(self, name, gemms, examples_per_step):
    self.name = name
    self.gemms = list(gemms)
    self.flops = flops.total_flops(self.gemms)
    self.examples_per_step = int(examples_per_step)
    self.flags = [(g.transpose_a, g.transpose_b) for g in self.gemms]


class TFGemms(_Gemms):
  """The products of `gemms` by `tf.matmul` (see the module docstring).

  Args:
    name: row name.
    gemms: a list of `flops.Gemm`.
    examples_per_step: the batch of the step these products belong to.
    jit_compile: XLA on or off.
    seed: the operands' draws.
  """

  def __init__(self, name, gemms, examples_per_step, jit_compile, seed=0):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    super().__init__(name, gemms, examples_per_step)
    self.operands = [(tf.constant(a), tf.constant(b))
                     for a, b in _operands(self.gemms, seed)]
    flags = self.flags

    def products(operands):
      return [tf.matmul(a, b, transpose_a=ta, transpose_b=tb)
              for (a, b), (ta, tb) in zip(operands, flags)]

    self.fn = tf.function(products, jit_compile=bool(jit_compile),
                          autograph=False)

  def step(self):
    outputs = self.fn(self.operands)
    return float(outputs[-1][0, 0])


class JAXGemms(_Gemms):
  """The products of `gemms` by `jnp.dot` in one `jax.jit` function."""

  def __init__(self, name, gemms, examples_per_step, seed=0):
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    super().__init__(name, gemms, examples_per_step)
    self.operands = [(jnp.asarray(a), jnp.asarray(b))
                     for a, b in _operands(self.gemms, seed)]
    flags = self.flags

    def products(operands):
      return [jnp.dot(a.T if ta else a, b.T if tb else b)
              for (a, b), (ta, tb) in zip(operands, flags)]

    self.fn = jax.jit(products)

  def step(self):
    outputs = self.fn(self.operands)
    for out in outputs:
      out.block_until_ready()
    return float(outputs[-1][0, 0])
