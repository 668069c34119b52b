"""Loads config files (configs/*.py, each with `get_config()`) by path.

Experiment files start from their sibling default.py:

    from vib_flows.app import config_files
    def get_config():
      config = config_files.sibling(__file__, "default")
      ...
"""

import importlib.util
import os
import types

import ml_collections


def load_module(path: str) -> types.ModuleType:
  """Imports the Python file at `path` as a fresh module."""
  path = os.path.abspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"No config file at {path}.")
  name = "vib_flows_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load(path: str) -> ml_collections.ConfigDict:
  """Returns `get_config()` of the config file at `path` (unlocked)."""
  return load_module(path).get_config()


def sibling(file: str, name: str) -> ml_collections.ConfigDict:
  """Returns `get_config()` of `name`.py in the directory of `file`."""
  directory = os.path.dirname(os.path.abspath(file))
  return load(os.path.join(directory, name + ".py"))
