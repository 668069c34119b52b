"""Command line: train, evaluate or export a VAE / VIB model with flows.

  python -m vib_flows.main --config=configs/vae_digits.py --workdir=DIR \
      [--mode=train|eval|export] [--config.flow.num_flows=8 ...] [--verbose]

Also installed as the console script `vib-flows`. The config file is an
ml_collections config (`get_config()`); it is locked, so a misspelt
--config.x.y override is refused.

Exit status: 0 when done; on a mistake or a fault the run stops with one
line on stderr, "vib_flows: <what is wrong>", and the status of
`vib_flows.app.faults`: 2 a mistake in the flags or the config (an unknown
field, an impossible value, a workdir of another run), 65 data that cannot
be read or do not fit the model, or no checkpoint can be read, 73 the
workdir is in use by another process, 74 a write failed, 75 stopped by
SIGTERM/SIGINT with a checkpoint (run the command again to resume). With
--verbose the Python traceback comes first; an unexpected error (a bug)
keeps its traceback and status 1. docs/errors.md lists the messages.
"""

from absl import flags

from vib_flows.app import cli

# The flags are defined in vib_flows.app.cli; --helpshort lists them here.
flags.adopt_module_key_flags(cli)


def run():
  """Console-script entry point (`vib-flows`)."""
  cli.run()


if __name__ == "__main__":
  run()
