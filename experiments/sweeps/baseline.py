"""The VIB sweep's deterministic baseline: a plain Keras MLP trained with `fit`.

Same widths as the VIB (encoder, a linear latent_dim-unit bottleneck,
classifier), the same data (config.data), input scaling
(model.centered_inputs), optimizer and learning-rate schedule
(config.optimizer), weight averaging (train.ema_decay: the averaged weights
are tested), batch size, epochs and early stopping patience (on the
validation cross-entropy, best weights restored). It is the VIB with no noise
and beta = 0. I(Z;X) is not bounded for a deterministic encoder;
test_izy_lower = H(Y) - cross-entropy as for the VIB.

A single-device `fit` is enough here: the baseline never runs distributed.
An interrupted run resumes from its last finished epoch
(`keras.callbacks.BackupAndRestore` in DIR/backup). Every epoch's losses and
duration are appended to DIR/history.csv (`keras.callbacks.CSVLogger`), so
that a resumed run's metrics cover the epochs of every process that trained
it (`whole_history`; `fit`'s own history holds only the last process's).
"""

from collections.abc import Sequence
import csv
import json
import math
import os
import time
from typing import Any

import keras
import ml_collections
import numpy as np

from vib_flows import data as data_lib
from vib_flows import objectives
from vib_flows.app import optimizer_builder
from vib_flows.app import workdir as workdir_lib

MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"


class EpochClock(keras.callbacks.Callback):
  """Adds "epoch_seconds", the epoch's wall time, to the epoch's logs."""

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None:
      logs["epoch_seconds"] = time.perf_counter() - self._start


def whole_history(directory: str,
                  epochs_run: int | None = None) -> dict[str, Any] | None:
  """Every epoch of the run from DIR/history.csv, each as last written.

  A resumed `fit` runs again the epochs after its last backup, and appends
  them again: the later row of an epoch is the one that led to the final
  weights. With `epochs_run`, the epochs beyond it are left out.

  Returns:
    {"validation_loss": [per epoch], "train_seconds": the epochs' durations
    summed}, or None when the file is missing or lacks an epoch (a run
    resumed from before the file existed).
  """
  path = os.path.join(directory, HISTORY_FILE)
  if not os.path.exists(path):
    return None
  rows = {}
  with open(path, newline="", encoding="utf-8") as f:
    for row in csv.DictReader(f):
      if epochs_run is None or int(row["epoch"]) < epochs_run:
        rows[int(row["epoch"])] = row
  expected = len(rows) if epochs_run is None else epochs_run
  if not rows or sorted(rows) != list(range(expected)):
    return None
  ordered = [rows[e] for e in sorted(rows)]
  return {"validation_loss": [float(r["val_loss"]) for r in ordered],
          "train_seconds": float(sum(float(r["epoch_seconds"])
                                     for r in ordered))}


def backfill_history(directory: str) -> bool:
  """Marks a finished run whose metrics hold one process's epochs only.

  Runs resumed before DIR/history.csv existed recorded `fit`'s history of
  their last process as if it were the whole run. Without early stopping
  every run trains the `train.num_epochs` of its own DIR/config.json, so a
  shorter history is such a run: its epochs_run is set to num_epochs, and
  its best_epoch, train_seconds and validation_loss to None (unknown; tables
  skip them), with "history_complete": False. With early stopping a short
  history is no sign of a resume: left alone.

  Returns:
    Whether metrics.json was changed.
  """
  path = os.path.join(directory, "metrics.json")
  with open(path, encoding="utf-8") as f:
    metrics = json.load(f)
  with open(os.path.join(directory, "config.json"), encoding="utf-8") as f:
    train = json.load(f)["train"]
  epochs = int(train["num_epochs"])
  losses = metrics.get("validation_loss") or []
  if ("history_complete" in metrics
      or int(train.get("early_stopping_patience", 0))
      or len(losses) >= epochs):
    return False
  metrics.update(epochs_run=epochs, best_epoch=None, train_seconds=None,
                 validation_loss=None, history_complete=False, resumed=True)
  workdir_lib.write_json_atomic(path, metrics)
  return True


def deterministic_model(config: ml_collections.ConfigDict,
                        input_shape: Sequence[int],
                        num_classes: int) -> keras.Model:
  """X [B, *input_shape] -> class logits [B, num_classes] (see the module)."""
  m = config.model
  inputs = keras.Input(shape=tuple(input_shape), name="x")
  h = keras.layers.Flatten()(inputs)
  if bool(m.get("centered_inputs", False)):
    h = keras.layers.Rescaling(2.0, offset=-1.0, name="centered")(h)
  for i, width in enumerate(m.encoder_hidden):
    h = keras.layers.Dense(width, activation=m.activation,
                           name=f"encoder_{i}")(h)
  h = keras.layers.Dense(m.latent_dim, name="bottleneck")(h)
  for i, width in enumerate(m.decoder_hidden):
    h = keras.layers.Dense(width, activation=m.activation,
                           name=f"classifier_{i}")(h)
  logits = keras.layers.Dense(num_classes, name="logits")(h)
  return keras.Model(inputs, logits, name="deterministic")


def train_deterministic_run(config: ml_collections.ConfigDict,
                            directory: str) -> dict[str, Any]:
  """Trains and tests the baseline; writes config.json and metrics.json.

  Returns:
    The metrics dict: test_accuracy, test_cross_entropy, test_izy_lower,
    label_entropy, best_epoch, epochs_run, train_seconds, eval_seconds,
    validation_loss (per epoch), num_test_examples, resumed,
    history_complete (False for a run resumed from before DIR/history.csv
    existed: its best_epoch, train_seconds and validation_loss are None).
  """
  keras.backend.clear_session()
  os.makedirs(directory, exist_ok=True)
  workdir_lib.write_json_atomic(os.path.join(directory, "config.json"),
                                json.loads(config.to_json_best_effort()))
  splits = data_lib.load(config)
  keras.utils.set_random_seed(config.seed)
  model = deterministic_model(config, splits.info.input_shape,
                              splits.info.num_classes)
  steps_per_epoch = splits.train.num_examples // config.train.batch_size
  model.compile(
      optimizer=optimizer_builder.make_optimizer(
          config.optimizer, steps_per_epoch=steps_per_epoch,
          ema_decay=float(config.train.get("ema_decay", 0.0))),
      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=["accuracy"],
      jit_compile=bool(config.train.jit_compile),
      steps_per_execution=int(config.train.steps_per_call),
  )
  backup = os.path.join(directory, "backup")
  resumed = os.path.isdir(backup) and bool(os.listdir(backup))
  # The clock before the logger (it adds epoch_seconds to the logs the
  # logger writes), both before the backup: a kill between an epoch's row
  # and its backup runs the epoch again, a row written twice, which
  # `whole_history` reads as the later one; the other order would lose it.
  callbacks = [EpochClock(),
               keras.callbacks.CSVLogger(
                   os.path.join(directory, HISTORY_FILE), append=True),
               keras.callbacks.BackupAndRestore(backup)]
  if config.train.early_stopping_patience:
    callbacks.append(keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=config.train.early_stopping_patience,
        restore_best_weights=True))
  start = time.perf_counter()
  history = model.fit(
      splits.train.x, splits.train.y, batch_size=config.train.batch_size,
      epochs=config.train.num_epochs, shuffle=True, verbose=0,
      validation_data=(splits.validation.x, splits.validation.y),
      callbacks=callbacks,
  )
  train_seconds = time.perf_counter() - start
  # The tested weights, for later evaluations (e.g. under attack).
  model.save(os.path.join(directory, MODEL_FILE))
  start = time.perf_counter()
  cross_entropy, accuracy = model.evaluate(
      splits.test.x, splits.test.y, batch_size=config.eval.batch_size,
      verbose=0)
  eval_seconds = time.perf_counter() - start
  val_loss = [float(v) for v in history.history["val_loss"]]
  # `fit` runs ceil(N / B) steps an epoch (the last batch partial).
  epochs_run = int(model.optimizer.iterations.numpy()) // math.ceil(
      splits.train.num_examples / config.train.batch_size)
  whole = whole_history(directory, epochs_run) if resumed else None
  history_complete = not resumed or whole is not None
  if whole is not None:
    val_loss, train_seconds = whole["validation_loss"], whole["train_seconds"]
  h_y = float(objectives.label_entropy(splits.test.y,
                                       splits.info.num_classes))
  # No KL: a deterministic encoder's I(Z;X) has no variational bound.
  bounds = objectives.information_bounds(None, float(cross_entropy), h_y)
  metrics = {
      "test_accuracy": float(accuracy),
      "test_cross_entropy": float(cross_entropy),
      "test_izy_lower": bounds["izy_lower"], "label_entropy": h_y,
      "num_test_examples": int(splits.test.x.shape[0]),
      "best_epoch": int(np.argmin(val_loss)) + 1 if history_complete else None,
      "epochs_run": epochs_run,
      "train_seconds": train_seconds if history_complete else None,
      "eval_seconds": eval_seconds,
      "validation_loss": val_loss if history_complete else None,
      "resumed": resumed, "history_complete": history_complete,
  }
  workdir_lib.write_json_atomic(os.path.join(directory, "metrics.json"),
                                metrics)
  return metrics
