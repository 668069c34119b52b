"""The input pipelines of vib_flows.data (`vib_flows.data.pipeline`).

Batches and remainders, disjoint shards of several pipelines, a seeded
order reshuffled each epoch (`epoch_order` is the training pipeline's order,
batch for batch), dynamic binarization seeded per example and epoch.
"""

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from vib_flows import data
from vib_flows.data import pipeline


def _labelled_split(n, dim=3):
  """X row i = i / n (so rows identify examples), y = i."""
  x = np.repeat(np.arange(n, dtype=np.float32)[:, None] / n, dim, axis=1)
  return data.Split(x, np.arange(n, dtype=np.int64))


def _epoch_labels(dataset):
  return np.concatenate([b["y"].numpy() for b in dataset])


def _context(pipeline_id, num_pipelines=2, replicas=2):
  return tf.distribute.InputContext(num_input_pipelines=num_pipelines,
                                    input_pipeline_id=pipeline_id,
                                    num_replicas_in_sync=replicas)


def test_batches_shapes_and_remainder():
  split = _labelled_split(10)
  config = helpers.config("default")
  train = pipeline.make_dataset_fn(split, 4, True, 0, config)(None)
  assert [b["x"].shape.as_list() for b in train] == [[4, 3], [4, 3]]
  assert train.element_spec["y"].dtype == tf.int32
  evaluation = pipeline.make_dataset_fn(split, 4, False, 0, config)(None)
  sizes = [int(b["x"].shape[0]) for b in evaluation]
  assert sizes == [4, 4, 2]
  np.testing.assert_array_equal(_epoch_labels(evaluation), np.arange(10))
  no_labels = data.Split(split.x)
  ds = pipeline.make_dataset_fn(no_labels, 4, False, 0, config)(None)
  assert set(ds.element_spec) == {"x"}


@pytest.mark.parametrize("training", [True, False])
def test_two_pipelines_shards_are_disjoint_and_cover(training):
  n = 24 if training else 23
  split = _labelled_split(n)
  fn = pipeline.make_dataset_fn(split, 4, training, 3,
                                helpers.config("default"))
  shards = []
  for pipeline_id in range(2):
    ds = fn(_context(pipeline_id))
    batch_sizes = {int(b["x"].shape[0]) for b in ds}
    assert max(batch_sizes) == 2  # Per-replica batch: 4 / 2 replicas.
    shards.append(_epoch_labels(ds))
  assert not set(shards[0]) & set(shards[1])
  np.testing.assert_array_equal(np.sort(np.concatenate(shards)), np.arange(n))
  if training:
    assert len(shards[0]) == len(shards[1])


def test_training_drops_the_uneven_tail_so_shards_match():
  fn = pipeline.make_dataset_fn(_labelled_split(25), 4, True, 0,
                                helpers.config("default"))
  counts = [len(_epoch_labels(fn(_context(i)))) for i in range(2)]
  assert counts == [12, 12]


def test_same_seed_same_order_reshuffled_each_epoch():
  split = _labelled_split(64)
  config = helpers.config("default")
  first = pipeline.make_dataset_fn(split, 8, True, 7, config)(None)
  again = pipeline.make_dataset_fn(split, 8, True, 7, config)(None)
  other = pipeline.make_dataset_fn(split, 8, True, 8, config)(None)
  epochs = [_epoch_labels(first) for _ in range(2)]
  np.testing.assert_array_equal(epochs[0], _epoch_labels(again))
  np.testing.assert_array_equal(epochs[1], _epoch_labels(again))
  assert not np.array_equal(epochs[0], epochs[1])
  assert not np.array_equal(epochs[0], _epoch_labels(other))
  assert not np.array_equal(epochs[0], np.arange(64))
  np.testing.assert_array_equal(np.sort(epochs[0]), np.arange(64))


@pytest.mark.parametrize("n,buffer", [(64, 10_000), (100, 16), (37, 0)])
def test_epoch_order_is_the_training_pipelines_order(n, buffer):
  # The trainer gathers batches by `epoch_order` instead of reading the
  # pipeline: every batch must be the pipeline's, in the same order, for a
  # whole-split buffer, a partial one (16 < n) and 0 (= the whole split).
  split = _labelled_split(n)
  config = helpers.config("default", **{"data.shuffle_buffer": buffer})
  for seed in (0, 7):
    batches = list(pipeline.make_dataset_fn(split, 8, True, seed, config)(None))
    order = pipeline.epoch_order(n, seed, config).numpy()
    np.testing.assert_array_equal(np.sort(order), np.arange(n))
    assert len(batches) == n // 8
    for j, batch in enumerate(batches):
      rows = order[j * 8:(j + 1) * 8]
      np.testing.assert_array_equal(batch["y"].numpy(), split.y[rows])
      np.testing.assert_array_equal(batch["x"].numpy(), split.x[rows])
  assert not np.array_equal(pipeline.epoch_order(n, 0, config).numpy(),
                            pipeline.epoch_order(n, 7, config).numpy())


def test_gathers_in_graph_only_for_one_replica_and_fixed_data():
  split = _labelled_split(16)
  config = helpers.config("default")
  assert pipeline.gathers_in_graph(split, config, 1)
  assert not pipeline.gathers_in_graph(split, config, 2)
  fresh = data.Split(split.x, split.y, sampler=lambda n, seed: split.x)
  assert not pipeline.gathers_in_graph(fresh, config, 1)
  dynamic = helpers.config("default", **{"data.preprocess": "dynamic",
                                         "model.likelihood": "bernoulli"})
  assert not pipeline.gathers_in_graph(split, dynamic, 1)


@pytest.mark.parametrize("training", [True, False])
def test_pipeline_runs_without_the_autotuning_thread(training):
  # Deleting an iterator waited up to 0.16 s for tf.data's autotuning thread,
  # once per training epoch (docs/performance.md).
  ds = pipeline.make_dataset_fn(_labelled_split(16), 4, training, 0,
                                helpers.config("default"))(None)
  assert ds.options().autotune.enabled is False
  np.testing.assert_array_equal(np.sort(_epoch_labels(ds)), np.arange(16))


def _by_label(dataset):
  """Epoch as {label: x row}."""
  rows = {}
  for b in dataset:
    for label, x in zip(b["y"].numpy(), b["x"].numpy()):
      rows[int(label)] = x
  return rows


def test_dynamic_binarization_seeded_per_example_and_epoch():
  n, dim = 32, 200
  split = data.Split(np.full((n, dim), 0.3, np.float32),
                     np.arange(n, dtype=np.int64))
  config = helpers.config("default", **{"data.preprocess": "dynamic",
                                        "model.likelihood": "bernoulli"})
  fn = pipeline.make_dataset_fn(split, 8, True, 5, config)
  ds = fn(None)
  epoch1, epoch2 = _by_label(ds), _by_label(ds)
  x1 = np.stack([epoch1[i] for i in range(n)])
  assert set(np.unique(x1)) <= {0.0, 1.0}
  assert abs(x1.mean() - 0.3) < 0.03
  assert not np.array_equal(x1, np.stack([epoch2[i] for i in range(n)]))
  # Same seed: same draws. Two pipelines: the same draw for each example.
  assert _by_label(fn(None)).keys() == epoch1.keys()
  for i, row in _by_label(fn(None)).items():
    np.testing.assert_array_equal(row, epoch1[i])
  sharded = {**_by_label(fn(_context(0))), **_by_label(fn(_context(1)))}
  for i, row in sharded.items():
    np.testing.assert_array_equal(row, epoch1[i])
  # Evaluation: one fixed binarization.
  evaluation = pipeline.make_dataset_fn(split, 8, False, 5, config)(None)
  first, second = _by_label(evaluation), _by_label(evaluation)
  for i in range(n):
    np.testing.assert_array_equal(first[i], second[i])
  assert set(np.unique(first[0])) <= {0.0, 1.0}


def test_pipeline_errors():
  split = _labelled_split(10)
  config = helpers.config("default")
  with pytest.raises(ValueError, match="fewer than its batch"):
    pipeline.make_dataset_fn(split, 16, True, 0, config)(None)
  with pytest.raises(ValueError):  # 5 does not divide over 2 replicas.
    pipeline.make_dataset_fn(split, 5, True, 0, config)(_context(0))
  with pytest.raises(ValueError, match="global_batch_size must be >= 1"):
    pipeline.make_dataset_fn(split, 0, True, 0, config)


def test_distribute_datasets_from_function_default_strategy():
  splits = data.load(helpers.config("default"))
  fn = data.make_dataset_fn(splits.train, 100, True, 0,
                            helpers.config("default"))
  strategy = tf.distribute.get_strategy()
  dist = strategy.distribute_datasets_from_function(fn)
  batches = list(dist)
  assert len(batches) == 10
  assert batches[0]["x"].shape == (100, 64)
