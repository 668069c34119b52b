"""The batch sources of an epoch (`vib_flows.app.batch_sources`).

The data order of epoch e is a permutation seeded by (seed, e): the same
for the same pair, another for another epoch or seed. One replica gathers
its batches in the loop; the run is the one the tf.data iterator gives.
"""

import types

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from vib_flows import data as data_lib
from vib_flows.app import batch_sources
from vib_flows.app import epoch_loop
from vib_flows.app import run_state


def test_batches_gathered_in_the_loop_train_as_the_tf_data_iterator(
    tmp_path, monkeypatch):
  """One replica gathers its batches in the loop; the same run as tf.data."""
  runs = {}
  for gathers in (True, False):
    if not gathers:  # The path of several replicas, with one replica.
      monkeypatch.setattr(data_lib, "gathers_in_graph",
                          lambda *args, **kwargs: False)
    config = helpers.run_config()
    config.train.num_epochs = 2
    config.train.steps_per_call = 3  # Calls that start mid-epoch.
    workdir = str(tmp_path / f"gathers_{gathers}")
    state = run_state.build_state(config, workdir)
    steps = batch_sources.batch_source(state)
    assert steps.gathers == gathers
    history = epoch_loop.train(state, verbose=False)
    runs[gathers] = (history, helpers.final_weights(workdir))
  (h_gather, w_gather), (h_data, w_data) = runs[True], runs[False]
  assert w_gather.keys() == w_data.keys()
  for name in w_gather:
    np.testing.assert_allclose(w_gather[name], w_data[name], rtol=1e-6,
                               atol=1e-7, err_msg=name)
  for a, b in zip(h_gather, h_data):
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)


def _state(seed, num_examples=40, batch_size=8):
  """What `epoch_dataset` reads of a run's state; example i has label i."""
  x = np.tile(np.arange(num_examples, dtype=np.float32)[:, None], (1, 3))
  return types.SimpleNamespace(
      config=helpers.run_config(seed=seed, **{"train.batch_size": batch_size}),
      splits=types.SimpleNamespace(
          train=data_lib.Split(x, np.arange(num_examples, dtype=np.int64))),
      strategy=tf.distribute.get_strategy())


def _order(seed, epoch):
  """The examples of epoch `epoch` of a run of `seed`, in the order read."""
  dataset = batch_sources.epoch_dataset(_state(seed), epoch)
  return np.concatenate([batch["y"].numpy() for batch in dataset])


def test_epoch_order_is_a_permutation_seeded_by_seed_and_epoch():
  order = _order(seed=3, epoch=1)
  np.testing.assert_array_equal(np.sort(order), np.arange(40))  # All, once.
  assert not np.array_equal(order, np.arange(40))  # Shuffled.
  # A resumed run reads the epoch again in the same order ...
  np.testing.assert_array_equal(_order(seed=3, epoch=1), order)
  # ... and another epoch or seed reads another, also where seed + epoch
  # is the same (3 + 1 = 4 + 0 = 2 + 2).
  for seed, epoch in ((3, 0), (3, 2), (4, 1), (4, 0), (2, 2)):
    assert not np.array_equal(_order(seed, epoch), order), (seed, epoch)
  assert len({batch_sources.epoch_seed(_state(seed).config, epoch)
              for seed in range(3) for epoch in range(3)}) == 9
