"""The command line's flags, their checks and `main` (`vib_flows.main` runs it).

`run()` parses the flags (`_parse_flags`: a mistake in them ends in one line
on stderr and status 2), then `main` installs the phases' signal handlers
(`phases.install`), configures the devices and runs the --mode of
`vib_flows.app.modes`. A `faults.RunStoppedError` ends the process with one
line, "vib_flows: <what is wrong>", and its exit status (docs/errors.md).
The usage, flags and exit statuses are in the docstring of `vib_flows.main`.
"""

import difflib
import os
import re
import sys
import traceback

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags

from vib_flows.app import config_files
from vib_flows.app import faults
from vib_flows.app import phases

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
_VERBOSE = flags.DEFINE_bool(
    "verbose", False,
    "On a mistake or a fault, print the Python traceback before the one-line "
    "message.",
)


def _one_line(text):
  """`text` on one line (a long multi-line text: its first and last lines)."""
  lines = [line.strip() for line in str(text).splitlines() if line.strip()]
  if len(lines) > 3:
    lines = [lines[0], "...", lines[-1]]
  return " ".join(lines)


def _stop(message, status, verbose):
  """Ends the process: "vib_flows: MESSAGE" on stderr and exit `status`.

  With `verbose`, the traceback of the exception being handled comes first.
  """
  if verbose and sys.exc_info()[0] is not None:
    traceback.print_exc()
  sys.stdout.flush()
  sys.stderr.flush()
  print(f"vib_flows: {_one_line(message)}", file=sys.stderr, flush=True)
  sys.exit(status)


def _verbose_requested(args):
  """Whether --verbose is among `args` (read before the flags parse)."""
  verbose = False
  for arg in args:
    name, _, value = arg.partition("=")
    if name in ("--verbose", "-verbose"):
      verbose = value.lower() in ("", "true", "1")
    elif name in ("--noverbose", "-noverbose"):
      verbose = False
  return verbose


def _config_path(args):
  """The value of --config in `args`, or None."""
  for i, arg in enumerate(args):
    match = re.match(r"^--?config(=(.*))?$", arg)
    if match:
      if match[1]:
        return match[2]
      return args[i + 1] if i + 1 < len(args) else None
  return None


def _unknown_field(config, dotted):
  """The message for the field `dotted` of --config.FIELD=..., or None."""
  node, walked = config, []
  for part in dotted.split("."):
    if isinstance(node, ml_collections.ConfigDict) and part in node:
      node = node[part]
      walked.append(part)
      continue
    where = ".".join(walked) or "the config"
    if not isinstance(node, ml_collections.ConfigDict):
      return (f"unknown config field --config.{dotted}: {where} is a value, "
              "not a section.")
    if not node.keys():
      return (f"unknown config field --config.{dotted}: {where} is empty; a "
              "config file adds its fields (see configs/default.py).")
    close = difflib.get_close_matches(part, list(node.keys()), n=1)
    hint = (f"; did you mean --config.{'.'.join(walked + close)}?" if close
            else f" (it has: {', '.join(node.keys())}).")
    return (f"unknown config field --config.{dotted}: {where} has no field "
            f"{part!r}{hint} configs/default.py documents every field.")
  return None


def _config_mistake(args):
  """The one-line mistake of --config or a --config.FIELD override, or None.

  None when --config loads and every override names a field: the error is
  then not the user's (or is in the config file's own code, whose traceback
  says where).
  """
  path = _config_path(args)
  if path is None:
    return None
  file_name, _, arg = path.partition(":")
  if not os.path.isfile(file_name):
    return (f"--config={path}: no such file (a config file is "
            "configs/NAME.py).")
  try:
    module = config_files.load_module(file_name)
    config = module.get_config(*([arg] if arg else []))
  except Exception:  # pylint: disable=broad-except
    return None
  for arg in args:
    match = re.match(r"^--?(?:no)?config\.([^=]+)", arg)
    if match:
      problem = _unknown_field(config, match[1])
      if problem:
        return problem
  return None


def _parse_flags(argv):
  """Parses the flags as absl does; a mistake ends in one line and status 2.

  Covers what absl refuses (an unknown flag, a value of the wrong type, an
  --mode outside its choices), an unknown --config.FIELD (refused by the
  locked config), a --config file that does not exist and a missing
  --config or --workdir. Returns the remaining arguments.
  """
  verbose = _verbose_requested(argv[1:])
  try:
    args = flags.FLAGS(argv)
  except flags.Error as error:
    if _config_path(argv[1:]) is None and any(
        re.match(r"^--?(?:no)?config\.", arg) for arg in argv[1:]):
      _stop("--config is required: the --config.FIELD flags override the "
            "fields of its file, e.g. --config=configs/vae_digits.py.",
            faults.EXIT_USAGE, verbose)
    _stop(f"{error}. See --helpshort for the flags.", faults.EXIT_USAGE,
          verbose)
  except (AttributeError, KeyError, TypeError, OSError):
    problem = _config_mistake(argv[1:])
    if problem is None:
      raise
    _stop(problem, faults.EXIT_USAGE, verbose)
  for name, example in (("config", "configs/vae_digits.py"),
                        ("workdir", "/tmp/run")):
    if not flags.FLAGS[name].value:
      _stop(f"--{name} is required, e.g. --{name}={example}. See --helpshort "
            "for the flags.", faults.EXIT_USAGE, verbose)
  if not isinstance(_CONFIG.value, ml_collections.ConfigDict):
    problem = _config_mistake(argv[1:])
    try:
      _CONFIG.value.lock()  # An unloadable config file raises its error here.
    except Exception as error:  # pylint: disable=broad-except
      _stop(problem or f"--config: {error}", faults.EXIT_USAGE, verbose)
    _stop(problem or "--config did not give a config (get_config() must "
          "return an ml_collections.ConfigDict).", faults.EXIT_USAGE, verbose)
  return args


def _workdir_mistake(workdir):
  """The message when --workdir cannot be a directory, or None."""
  if "://" in workdir:
    return None
  path = os.path.abspath(workdir)
  while not os.path.lexists(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  if os.path.exists(path) and not os.path.isdir(path):
    if path == os.path.abspath(workdir):
      return (f"--workdir {workdir} is a file, not a directory; give a "
              "directory (it is created if missing).")
    return (f"--workdir {workdir}: {path} is a file, not a directory; give a "
            "directory (it is created if missing).")
  return None


def main(argv):
  """Trains, evaluates or exports (--mode) the --config run in --workdir."""
  phases.install()  # SIGTERM, SIGINT end every phase promptly (status 75).
  verbose = _VERBOSE.value
  if len(argv) > 1:
    _stop(f"unexpected arguments {' '.join(argv[1:])}: every setting is a "
          "flag (--name=value). See --helpshort for the flags.",
          faults.EXIT_USAGE, verbose)
  problem = _workdir_mistake(_WORKDIR.value)
  if problem:
    _stop(problem, faults.EXIT_USAGE, verbose)
  config = _CONFIG.value
  # Logical CPU devices must exist before TensorFlow starts its runtime.
  from vib_flows.app import distribute  # pylint: disable=g-import-not-at-top
  try:
    with faults.mistakes_are(faults.ConfigError):
      distribute.configure_devices(config.runtime)
  except faults.ConfigError as error:
    _stop(str(error), error.exit_status, verbose)
  from vib_flows.app import modes  # pylint: disable=g-import-not-at-top
  logging.info("Mode %s, workdir %s", _MODE.value, _WORKDIR.value)
  try:
    if _MODE.value == "train":
      modes.train_and_evaluate(config, _WORKDIR.value)
    elif _MODE.value == "eval":
      modes.evaluate_only(config, _WORKDIR.value)
    else:
      print(modes.export_only(config, _WORKDIR.value))
  except faults.RunStoppedError as stopped:
    _stop(str(stopped), stopped.exit_status, verbose)


def run():
  """Parses the flags and runs `main` (absl's `app.run`)."""
  app.run(main, flags_parser=_parse_flags)
