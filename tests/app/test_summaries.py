"""TensorBoard summaries (`vib_flows.app.summaries`).

The scalars an epoch gives are in the event file, read back with
TensorFlow's own reader (`tf.compat.v1.train.summary_iterator`); a worker
other than the chief writes nothing; a full disk stops the run with one line.
"""

import os
import re
import types

import pytest

from tests import helpers
from vib_flows.app import epoch_loop
from vib_flows.app import faults
from vib_flows.app import run_state
from vib_flows.app import summaries


def test_full_summary_disk_stops_with_write_failed(tmp_path):
  """DIR/tensorboard on its own full tmpfs: the summary file cannot start."""
  workdir = tmp_path / "run"
  workdir.mkdir()
  config = helpers.run_config()
  config.train.num_epochs = 1
  with helpers.tmpfs(workdir / "tensorboard", "64k") as board:
    helpers.fill(board, 0)
    state = run_state.build_state(config, str(workdir))
    with pytest.raises(faults.WriteFailedError,
                       match=rf"Could not write the TensorBoard summaries to "
                       rf"{re.escape(str(board))}: No space left on device "
                       r"\(ENOSPC\)"):
      epoch_loop.train(state, verbose=False)
  assert helpers.checkpoint_step(str(workdir)) == 0  # Stopped before any step.


def test_an_epoch_writes_the_scalars_it_is_given(tmp_path):
  """train/* and validation/* at the epoch's step, as TensorBoard reads them."""
  writer = summaries.make_writer(str(tmp_path), is_chief=True)
  no_pictures = types.SimpleNamespace(models_inputs=False)
  epochs = {10: ({"loss": 2.5, "kl": 0.25}, {"loss": 3.0}),
            20: ({"loss": 1.5, "kl": 0.5}, {"loss": 2.0, "kl": 0.75})}
  for step, (train, validation) in epochs.items():
    summaries.write_epoch(writer, step, train, validation, no_pictures,
                          splits=None, config=None)
  assert helpers.logged_scalars(str(tmp_path)) == {
      (f"{prefix}/{name}", step): value
      for step, metrics in epochs.items()
      for prefix, written in zip(("train", "validation"), metrics)
      for name, value in written.items()}


def test_a_worker_but_the_chief_writes_nothing(tmp_path):
  writer = summaries.make_writer(str(tmp_path), is_chief=False)
  summaries.write_epoch(writer, 10, {"loss": 1.0}, {"loss": 2.0},
                        types.SimpleNamespace(models_inputs=False),
                        splits=None, config=None)
  assert not os.listdir(tmp_path)
