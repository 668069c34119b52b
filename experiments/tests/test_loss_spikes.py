"""Finding where a run's training blew up (experiments.research.loss_spikes)."""

import numpy as np
import tensorflow as tf

from experiments.research import loss_spikes


def _write_run(run_dir, epochs, steps_per_epoch=50, process=1):
  """DIR/tensorboard with one process's events file of {tag: value} per epoch.

  `epochs` maps epoch numbers to {summary tag: value}; each epoch's record
  is at its last step, as the trainer writes them, and later processes
  write later (wall time 1000 * process + epoch).
  """
  name = f"{process}.host.{process}.0.v2"
  board = run_dir / "tensorboard"
  board.mkdir(exist_ok=True)
  with tf.io.TFRecordWriter(str(board / f"events.out.tfevents.{name}")) as w:
    for epoch, values in epochs.items():
      event = tf.compat.v1.Event(wall_time=1000.0 * process + epoch,
                                 step=epoch * steps_per_epoch)
      for tag, value in values.items():
        event.summary.value.add(tag=tag,
                                tensor=tf.make_tensor_proto(np.float32(value)))
      w.write(event.SerializeToString())


def _epoch(elbo, kl=30.0):
  """Summaries of one epoch whose training ELBO is `elbo`."""
  return {"train/elbo": elbo, "train/kl": kl,
          "train/reconstruction": elbo + kl, "validation/elbo": elbo - 1.0,
          "validation/kl": kl, "train/loss": 0.0}


def test_spikes_compare_with_the_median_of_the_window_before():
  loss = np.array([100.0, 90.0, 95.0, 104.9, 105.1, 200.0, 95.0])
  # Epoch 4: median(100, 90, 95) + 10 = 105 is not exceeded; epoch 5's
  # window (90, 95, 104.9) has median 95: 105.1 is a spike; epoch 6 too;
  # epoch 7 is back under its window's median (104.9, 105.1, 200) + 10.
  assert loss_spikes.spikes(loss, window=3, jump=10.0) == [5, 6]
  # A falling curve (a KL warm-up's ELBO) has none.
  assert loss_spikes.spikes(np.linspace(300, 90, 50), 10, 10.0) == []


def test_report_finds_the_first_spike_and_shows_its_terms(tmp_path):
  epochs = {e: _epoch(-100.0 + 0.1 * e) for e in range(1, 21)}
  epochs[15] = _epoch(-5000.0, kl=4900.0)
  _write_run(tmp_path, epochs)
  text = loss_spikes.report(str(tmp_path), window=10, jump=10.0, context=1)
  assert "first spike: epoch 15, train -ELBO 5000.0" in text
  assert "1 spike epochs: 15" in text
  rows = [line for line in text.splitlines() if line[:3] in ("14 ", "15 ",
                                                             "16 ")]
  # The ELBO is negated (nats of loss); the reconstruction term is signed.
  assert rows[1] == "15 | 5000.0 | 4900.0 | -100.0 | 5001.0 | 4900.0"
  assert [r.split(" | ")[1] for r in rows] == ["98.6", "5000.0", "98.4"]


def test_report_keeps_a_resumed_epoch_as_last_written(tmp_path):
  epochs = {e: _epoch(-100.0 + 0.1 * e) for e in range(1, 21)}
  epochs[15] = _epoch(-5000.0, kl=4900.0)
  _write_run(tmp_path, epochs)
  # A second process ran epochs 15-20 again from a checkpoint at 14: no spike.
  _write_run(tmp_path, {e: _epoch(-100.0 + 0.1 * e) for e in range(15, 21)},
             process=2)
  text = loss_spikes.report(str(tmp_path))
  assert "20 epochs" in text and "no spike" in text
