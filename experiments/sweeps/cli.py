"""Command line of the results sweeps (run as `python -m experiments.sweep`).

  python -m experiments.sweep --sweep=vae_digits --workdir=DIR [--seeds=3] \
      [--first_seed=0] [--epochs=N] [--importance_samples=K] \
      [--only=none,planar4_global]
  python -m experiments.sweep --sweep=vib_digits --workdir=DIR [--seeds=3]
  python -m experiments.sweep --sweep=iaf_digits --workdir=DIR [--seeds=3]
  python -m experiments.sweep --sweep=synthetic_true|synthetic_learned ...
  python -m experiments.sweep --sweep=digits_protocol|digits_defaults ...
  python -m experiments.sweep --sweep=vib_mnist --workdir=DIR \
      --set=data.name=idx:/path/to/mnist
  python -m experiments.sweep --sweep=... --workdir=DIR --report_only

The same command continues an interrupted sweep; --report_only only rewrites
DIR/results.* from the finished runs. Prints DIR/results.md at the end.
"""

from collections.abc import Sequence
import os
import sys

from absl import app
from absl import flags
from absl import logging
import keras

from experiments.sweeps import aggregate
from experiments.sweeps import grids
from experiments.sweeps import run

_SWEEP = flags.DEFINE_enum("sweep", None, list(grids.SWEEP_NAMES),
                           "Which sweep.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep directory.")
_SEEDS = flags.DEFINE_integer(
    "seeds", 3, "Seeds per configuration (first_seed .. first_seed + N-1).")
_FIRST_SEED = flags.DEFINE_integer(
    "first_seed", 0, "The first seed (fresh seeds confirm a choice made on "
    "others).")
_EPOCHS = flags.DEFINE_integer(
    "epochs", 0, "train.num_epochs of every run (0: the config's).")
_IMPORTANCE = flags.DEFINE_integer(
    "importance_samples", 0,
    "eval.num_importance_samples (0: the config's, 5000).")
_ONLY = flags.DEFINE_list("only", [], "Configurations to run (default all).")
_SET = flags.DEFINE_multi_string(
    "set", [], "section.field=value set in every run, after the grid's "
    "overrides (repeatable), e.g. --set=data.name=idx:/path/to/mnist.")
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only", False, "Only write results.* from finished runs.")


def main(argv: Sequence[str]) -> None:
  """Runs the sweep (or only reports, --report_only); prints results.md."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  keras.config.disable_interactive_logging()  # No progress bars in logs.
  command = "python -m experiments.sweep " + " ".join(
      a for a in sys.argv[1:] if not a.startswith("--report_only"))
  kwargs = dict(seeds=_SEEDS.value, first_seed=_FIRST_SEED.value,
                epochs=_EPOCHS.value,
                importance_samples=_IMPORTANCE.value,
                only=_ONLY.value or None, command=command,
                settings=grids.parse_settings(_SET.value))
  if _REPORT_ONLY.value:
    aggregate.write_results(_SWEEP.value, _WORKDIR.value, **kwargs)
  else:
    run.run_sweep(_SWEEP.value, _WORKDIR.value,
                  log=lambda line: print(line, flush=True), **kwargs)
  with open(os.path.join(_WORKDIR.value, "results.md")) as f:
    print(f.read())


def run_main() -> None:
  """Entry point: parses the flags and runs `main`."""
  flags.mark_flags_as_required(["sweep", "workdir"])
  logging.set_verbosity(logging.WARNING)
  app.run(main)
