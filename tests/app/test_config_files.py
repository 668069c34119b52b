"""Config files (`vib_flows.app.config_files`): loaded by path, fresh each time.

A file's `get_config()`, a sibling found next to the file that asks for it
(whatever the working directory), and a missing file named.
"""

import pytest

from tests import helpers
from vib_flows.app import config_files

BASE = """
import ml_collections

def get_config():
  config = ml_collections.ConfigDict()
  config.train = ml_collections.ConfigDict({"num_epochs": 3})
  return config
"""
# Starts from its sibling base.py, as the shipped configs start from
# default.py.
EXPERIMENT = """
from vib_flows.app import config_files

def get_config():
  config = config_files.sibling(__file__, "base")
  config.train.num_epochs += 1
  return config
"""


def test_a_file_gives_its_get_config_and_a_sibling_is_next_to_it(
    tmp_path, monkeypatch):
  folder = tmp_path / "configs"
  folder.mkdir()
  (folder / "base.py").write_text(BASE)
  (folder / "experiment.py").write_text(EXPERIMENT)
  monkeypatch.chdir(tmp_path)  # Not the files' directory.
  base = config_files.load(str(folder / "base.py"))
  assert base.train.num_epochs == 3
  assert config_files.load("configs/experiment.py").train.num_epochs == 4
  base.train.num_epochs = 99  # A loaded config is the caller's own.
  assert config_files.load(str(folder / "base.py")).train.num_epochs == 3
  assert config_files.sibling(str(folder / "experiment.py"),
                              "base").train.num_epochs == 3


def test_a_missing_file_is_named():
  with pytest.raises(FileNotFoundError,
                     match=r"No config file at /\S+/configs/nope\.py\."):
    config_files.load(f"{helpers.CONFIGS}/nope.py")
