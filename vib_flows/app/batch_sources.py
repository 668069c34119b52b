"""Where the batches of an epoch come from, in a seeded order.

One interface, `BatchSource`: `start(epoch, skip)` then `run(num_steps)`,
over two ways of reading an epoch's batches in the same order:
`GatheredBatches` (one replica, fixed in-memory data: each batch gathered
from tensors inside the loop) and `DatasetBatches` (the epoch's distributed
tf.data iterator). `batch_source` picks one for the run. The data order of
epoch e is seeded by (seed, e) (`epoch_seed`), so a run resumed mid-epoch
reads the batches the uninterrupted run would have read.
"""

import abc
import threading

import tensorflow as tf

from vib_flows import data as data_lib
from vib_flows.app import distributed_steps


def epoch_seed(config, epoch):
  """The seed of epoch `epoch`'s data order (0-based epoch)."""
  return int(config.seed) * 1_000_003 + int(epoch)


def epoch_dataset(state, epoch):
  """The distributed tf.data dataset of epoch `epoch` (0-based)."""
  fn = data_lib.make_dataset_fn(
      state.splits.train, state.config.train.batch_size, True,
      epoch_seed(state.config, epoch), state.config
  )
  return state.strategy.distribute_datasets_from_function(fn)


class BatchSource(abc.ABC):
  """Runs calls of one epoch's steps on the epoch's batches, in order.

  `start(epoch, skip)` positions the source at step `skip` (0-based, within
  the epoch) of epoch `epoch`; each `run(num_steps)` then runs the next
  `num_steps` steps and returns their summed terms
  (`distributed_steps.make_train_loop`).
  """

  gathers: bool

  def __init__(self, state):
    self._state = state

  @abc.abstractmethod
  def start(self, epoch, skip):
    """Starts epoch `epoch` (0-based) after its first `skip` steps."""

  @abc.abstractmethod
  def run(self, num_steps):
    """Runs the epoch's next `num_steps` steps; returns the summed terms."""


class DatasetBatches(BatchSource):
  """The epoch's distributed tf.data iterator (any strategy)."""

  gathers = False

  def __init__(self, state):
    super().__init__(state)
    self._loop = distributed_steps.make_train_loop(state)
    self._iterator = None

  def start(self, epoch, skip):
    self._iterator = iter(epoch_dataset(self._state, epoch))
    for _ in range(skip):  # Resume mid-epoch where the checkpoint left off.
      next(self._iterator)

  def run(self, num_steps):
    return self._loop(self._iterator, tf.constant(num_steps, tf.int32))


class GatheredBatches(BatchSource):
  """Batches gathered in the loop from the in-memory training split.

  One replica, fixed in-memory data (`data.gathers_in_graph`); the next
  epoch's order (`data.epoch_order`, tf.data on the host) is computed by a
  background thread while this epoch's steps run.
  """

  gathers = True

  def __init__(self, state):
    super().__init__(state)
    self._num_examples = state.splits.train.x.shape[0]
    self._loop = distributed_steps.make_gathering_train_loop(state)
    self._features = {
        k: tf.constant(v)
        for k, v in data_lib.example_arrays(state.splits.train).items()}
    self._next_order = None  # (epoch, thread, {"order": tensor}).
    self._epoch_order = None
    self._done = 0

  def _order(self, epoch):
    config = self._state.config
    return data_lib.epoch_order(self._num_examples,
                                epoch_seed(config, epoch), config)

  def _prepare_order(self, epoch):
    result = {}
    thread = threading.Thread(
        target=lambda: result.update(order=self._order(epoch)), daemon=True)
    thread.start()
    self._next_order = (epoch, thread, result)

  def start(self, epoch, skip):
    order = None
    if self._next_order is not None and self._next_order[0] == epoch:
      _, thread, result = self._next_order
      thread.join()
      order = result.get("order")  # None if the thread failed: again here.
    self._epoch_order = self._order(epoch) if order is None else order
    self._done = skip
    self._prepare_order(epoch + 1)

  def run(self, num_steps):
    sums = self._loop(self._features, self._epoch_order,
                      tf.constant(self._done, tf.int32),
                      tf.constant(num_steps, tf.int32))
    self._done += num_steps
    return sums


def batch_source(state):
  """The `BatchSource` of the run: gathered when it can be, else tf.data."""
  gathers = data_lib.gathers_in_graph(
      state.splits.train, state.config,
      state.strategy.num_replicas_in_sync, state.splits.info)
  return GatheredBatches(state) if gathers else DatasetBatches(state)
