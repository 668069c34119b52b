"""Fast `model.fit` settings for models with flow layers, per Keras backend.

On the JAX backend Keras compiles the training step with XLA by default
(`jit_compile="auto"`) and feeds NumPy arrays with little Python work per
step. On TensorFlow it does neither on a machine without a GPU: the step
runs as a plain TensorFlow graph, one graph call per step, fed by a tf.data
pipeline that Keras builds from the arrays at every `fit` call. Small models,
such as a density model of 2-D points, then spend most of a step in that
overhead: examples/density_2d_benchmark.py measures it (docs/flows.md: the
recipe below trains examples/density_2d.py's model about 4x faster than
TensorFlow's defaults; JAX's defaults are still about 2x faster).

The recipe, for TensorFlow:

    model.compile(optimizer=..., loss=..., **fit_settings.compile_kwargs())
    model.fit(fit_settings.training_dataset(x, y, batch_size=200),
              epochs=40, shuffle=False)

- `jit_compile=True`: the step (forward, gradients, optimizer update) is one
  XLA computation. Every registered flow family compiles under XLA, global
  and amortized (tests/test_fit_settings.py).
- `steps_per_execution`: that many steps run in one call of the training
  function (a loop inside the TensorFlow graph), so Python, the callbacks
  and the host-device synchronisation run once per call, not once per step.
  Callbacks' `on_train_batch_*` (and the progress bar) see every
  `steps_per_execution`-th step only; epoch ends are unaffected.
- A tf.data input built once (`training_dataset`): the examples are held in
  memory (`cache`), reshuffled every epoch, batched with `drop_remainder`
  so that every batch has the same static shape (XLA compiles one program
  per input shape: a last, smaller batch would need a second one) and
  prefetched.

On JAX the defaults are already compiled (`compile_kwargs` returns no
arguments there); PyTorch's defaults run eagerly, and `torch.compile` is not
tested with the flows, so it returns none there either.
"""

from typing import Any

import keras
import numpy as np

# Steps per call of the training function on TensorFlow. An epoch's end also
# ends a call, so any value from the steps of an epoch up is the same (10 in
# examples/density_2d.py); callbacks see every `steps_per_execution`-th step.
DEFAULT_STEPS_PER_EXECUTION = 50


def compile_kwargs(steps_per_execution: int = DEFAULT_STEPS_PER_EXECUTION,
                   jit_compile: bool = True) -> dict[str, Any]:
  """The `model.compile` keyword arguments that make `fit` fast.

  XLA compiles the step once, in the first epoch: about 8 s more than
  without XLA for 4 spline couplings on 2 cores, more for deep
  autoregressive stacks, where XLA's
  time and memory grow faster than the number of MADE passes (64 MAF
  passes took over 29 minutes and 8 GB). Pass `jit_compile=False` there:
  the steps per call still save Python work.

  Args:
    steps_per_execution: training steps per call of the training function
      (TensorFlow only), >= 1.
    jit_compile: compile the step with XLA (TensorFlow only).

  Returns:
    On the TensorFlow backend `{"jit_compile": jit_compile,
    "steps_per_execution": steps_per_execution}`; on JAX and PyTorch `{}`
    (JAX compiles by default; see the module docstring).

  Raises:
    ValueError: steps_per_execution < 1.
  """
  if int(steps_per_execution) < 1:
    raise ValueError(
        f"steps_per_execution must be >= 1, got {steps_per_execution}.")
  if keras.backend.backend() == "tensorflow":
    return {"jit_compile": bool(jit_compile),
            "steps_per_execution": int(steps_per_execution)}
  return {}


def training_dataset(x: Any, y: Any = None, batch_size: int = 32,
                     shuffle: bool = True, seed: int | None = None) -> Any:
  """A `tf.data.Dataset` of (x, y) batches for `model.fit`, built once.

  The examples are cached in memory, reshuffled at every epoch (`seed` makes
  the order reproducible), batched with `drop_remainder=True` (every batch
  has `batch_size` examples: one static shape for XLA; the last
  len(x) % batch_size examples of each epoch's order are left out) and
  prefetched. Pass it to `fit` as `x`, with no `batch_size`; `fit`'s
  `shuffle` does not apply to a dataset (`shuffle=False` spares Keras's
  warning that says so).

  Needs TensorFlow installed (the dataset is a TensorFlow object); Keras
  accepts it on every backend.

  Args:
    x: NumPy array [N, ...] (or a tuple or dict of them: the model's
      inputs).
    y: targets [N, ...] (or a structure of them), or None for models whose
      loss needs none.
    batch_size: examples per batch, at most N.
    shuffle: reshuffle the examples at every epoch.
    seed: the shuffle's seed (None: a random order every run).

  Returns:
    The dataset, `len(x) // batch_size` batches per epoch.

  Raises:
    ValueError: batch_size < 1 or larger than the number of examples.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  num_examples = len(_first_array(x))
  if not 1 <= int(batch_size) <= num_examples:
    raise ValueError(
        f"batch_size must be in 1..{num_examples} (the number of examples), "
        f"got {batch_size}.")
  # A list would be stacked into one tensor: the inputs of a model with
  # several are a tuple.
  x, y = (tuple(v) if isinstance(v, list) else v for v in (x, y))
  elements = x if y is None else (x, y)
  dataset = tf.data.Dataset.from_tensor_slices(elements).cache()
  if shuffle:
    dataset = dataset.shuffle(num_examples, seed=seed,
                              reshuffle_each_iteration=True)
  dataset = dataset.batch(int(batch_size), drop_remainder=True)
  return dataset.prefetch(tf.data.AUTOTUNE)


def _first_array(structure: Any) -> Any:
  """The first array of a tuple, list or dict of arrays (or the array)."""
  while isinstance(structure, (tuple, list, dict)):
    values = (list(structure.values()) if isinstance(structure, dict)
              else list(structure))
    if not values:
      raise ValueError("x holds no arrays.")
    structure = values[0]
  return np.asarray(structure)
