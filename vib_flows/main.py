"""Command line: train, evaluate or export a VAE / VIB model with flows.

  python -m vib_flows.main --config=configs/vae_digits.py --workdir=DIR \
      [--mode=train|eval|export] [--config.flow.num_flows=8 ...]

Also installed as the console script `vib-flows`. The config file is an
ml_collections config (`get_config()`); it is locked, so a misspelt
--config.x.y override is refused.

Exit status: 0 when done; on a fault the run stops with one line on stderr
and the status of `vib_flows.faults`: 75 stopped by SIGTERM/SIGINT with a
checkpoint (run the command again to resume), 74 a write failed, 73 the
workdir is in use by another process, 65 no checkpoint can be read.
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (configs/NAME.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run directory: config.json, checkpoints, metrics.json."
)
_MODE = flags.DEFINE_enum(
    "mode", "train", ["train", "eval", "export"],
    "train (then evaluate and export), eval (metrics.json from the best "
    "checkpoint) or export (SavedModel from the best checkpoint).",
)


def main(argv):
  """Trains, evaluates or exports (--mode) the --config run in --workdir."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  # Logical CPU devices must exist before TensorFlow starts its runtime.
  from vib_flows import distribute  # pylint: disable=g-import-not-at-top
  distribute.configure_devices(config.runtime)
  from vib_flows import faults  # pylint: disable=g-import-not-at-top
  from vib_flows import train  # pylint: disable=g-import-not-at-top
  logging.info("Mode %s, workdir %s", _MODE.value, _WORKDIR.value)
  try:
    if _MODE.value == "train":
      train.train_and_evaluate(config, _WORKDIR.value)
    elif _MODE.value == "eval":
      train.evaluate_only(config, _WORKDIR.value)
    else:
      print(train.export_only(config, _WORKDIR.value))
  except faults.RunStoppedError as stopped:
    sys.stderr.flush()
    print(f"vib_flows: {stopped}", file=sys.stderr, flush=True)
    sys.exit(stopped.exit_status)


def run():
  """Console-script entry point (`vib-flows`)."""
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)


if __name__ == "__main__":
  run()
