"""The training step exactly as the trainer runs it, fed two ways.

`PackageStep` builds a `run_state.State` with `run_state.build_state` (default
strategy, synthetic splits) and the trainer's
`distributed_steps.make_train_step`, and feeds it one in-memory batch.
`PipelineFedStep` feeds the same compiled step from the trainer's input pipeline
(`data.make_dataset_fn` through `strategy.distribute_datasets_from_function`, a
new iterator per epoch, as `epoch_loop.train` does). Both read the step's sums
as floats and check them, as the trainer's loop does after every step.
`PipelineAlone` pulls the same pipeline's batches and trains nothing.
"""

import numpy as np
import tensorflow as tf

from vib_flows import data as data_lib
from vib_flows.app import distributed_steps
from vib_flows.app import run_state


def _read(sums):
  """What epoch_loop.train does with a step's output: floats, finite check."""
  values = {k: float(v) for k, v in sums.items()}
  if not all(np.isfinite(v) for v in values.values()):
    raise FloatingPointError(f"Non-finite training sums: {values}")
  return values


class PackageStep:
  """vib_flows' training step on one in-memory batch.

  Args:
    name: row name in the table.
    config: the case's config (`synthetic.case_config`).
    splits: `DataSplits` (the first `train.batch_size` examples of train are
      the batch).
    workdir: an empty directory (build_state makes checkpoint managers there;
      nothing is written).
  """

  def __init__(self, name, config, splits, workdir):
    self.name = name
    self.config = config
    strategy = tf.distribute.get_strategy()
    self.state = run_state.build_state(config, workdir, strategy, splits)
    self.train_step = distributed_steps.make_train_step(self.state)
    n = int(config.train.batch_size)
    self.examples_per_step = n
    self.batch = {
        "x": tf.constant(splits.train.x[:n], tf.float32),
        "y": tf.constant(splits.train.y[:n], tf.int32),
    }

  @property
  def xla(self):
    """Whether the trainer compiles this case's gradients with XLA."""
    return distributed_steps.use_xla(self.config, self.state.strategy)

  def step(self):
    return _read(self.train_step(self.batch))


class PipelineFedStep:
  """The same compiled step as `package_step`, fed by the trainer's tf.data.

  Args:
    name: row name.
    package_step: a `PackageStep` (its state, config and step are reused).
  """

  def __init__(self, name, package_step):
    self.name = name
    self.inner = package_step
    self.examples_per_step = package_step.examples_per_step
    self.epoch = 0
    self.iterator = self._new_epoch()

  def _new_epoch(self):
    state, config = self.inner.state, self.inner.config
    seed = int(config.seed) * 1_000_003 + self.epoch
    fn = data_lib.make_dataset_fn(state.splits.train, config.train.batch_size,
                                  True, seed, config)
    return iter(state.strategy.distribute_datasets_from_function(fn))

  def next_batch(self):
    """The pipeline's next batch (`epoch` counts the new epochs begun)."""
    try:
      return next(self.iterator)
    except StopIteration:  # End of epoch: a new iterator, as epoch_loop.train.
      self.epoch += 1
      self.iterator = self._new_epoch()
      return next(self.iterator)

  def step(self):
    return _read(self.inner.train_step(self.next_batch()))


class PipelineAlone(PipelineFedStep):
  """The trainer's input pipeline alone: pulls batches, trains nothing.

  The batches `PipelineFedStep` feeds the step (so with data.preprocess =
  "dynamic" every batch is a fresh Bernoulli draw); `step()` waits for each.

  Args:
    name: row name.
    package_step: a `PackageStep` (its state and config make the pipeline).
  """

  def step(self):
    return self.next_batch()["x"].shape
