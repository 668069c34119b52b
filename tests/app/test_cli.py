"""The command line (`vib_flows.app.cli`, launched by `vib_flows.main`).

Mistakes at the command line: one line, a documented status, no debris.
Every row of docs/errors.md is a real `python -m vib_flows.main` process
(`helpers.run_main`): its exit status, stderr's last line ("vib_flows: "
and the problem), no traceback (with --verbose, one), and the workdir as
the command found it. The rows fail before any training. A flag overrides
the config's field in the trained model, and the console script is
installed.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers

CONFIG = "--config=configs/test.py"
TINY = helpers.TINY_RUN_FLAGS  # One epoch, a cheap evaluation, no export.


def _npz(path, **changes):
  """A 10-class npz of 200 training and 50 test digits-like examples."""
  rng = np.random.default_rng(0)
  arrays = dict(
      x_train=rng.integers(0, 17, (200, 64)).astype(np.int32),
      y_train=np.arange(200) % 10,
      x_test=rng.integers(0, 17, (50, 64)).astype(np.int32),
      y_test=np.arange(50) % 10)
  for key, (index, value) in changes.items():
    arrays[key][index] = value
  np.savez(path, **arrays)


def _idx_file(path, magic, array):
  """An IDX file: big-endian magic and sizes, then the bytes of `array`."""
  header = magic.to_bytes(4, "big") + b"".join(
      int(d).to_bytes(4, "big") for d in array.shape)
  with open(path, "wb") as f:
    f.write(header + np.asarray(array, np.uint8).tobytes())


def _run_config(tmp_path, **overrides):
  """DIR/config.json of a run of configs/test.py with `overrides`."""
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text(
      helpers.config("test", **overrides).to_json_best_effort())
  return workdir


def _setup(name, tmp_path):
  """Makes the files a row reads; returns {placeholder: path}."""
  paths = {"workdir": str(tmp_path / "run"), "data": str(tmp_path / "data")}
  if name == "random_bytes":
    (tmp_path / "data").write_bytes(np.random.default_rng(0).bytes(2000))
  elif name == "stray_label":
    _npz(tmp_path / "data.npz", y_train=(7, 50))
  elif name == "label_outside_num_classes":
    _npz(tmp_path / "data.npz", y_test=(3, 12))
  elif name == "outside_support":
    _npz(tmp_path / "data.npz", x_train=((5, 3), 20))
  elif name == "idx_magic":
    folder = tmp_path / "data"
    folder.mkdir()
    images, labels = 0x00000803, 0x00000801
    _idx_file(folder / "train-images-idx3-ubyte", images,
              np.zeros((20, 4, 4)))
    _idx_file(folder / "train-labels-idx1-ubyte", images, np.arange(20) % 10)
    _idx_file(folder / "t10k-images-idx3-ubyte", images, np.zeros((10, 4, 4)))
    _idx_file(folder / "t10k-labels-idx1-ubyte", labels, np.arange(10))
  elif name == "workdir_is_a_file":
    (tmp_path / "run").write_text("not a directory\n")
  elif name in ("train_vae_in_vib_run", "train_other_config"):
    _run_config(tmp_path, **{"model.kind": "vib"})
  elif name in ("eval_vae_on_vib_run", "eval_other_config"):
    workdir = _run_config(tmp_path, **{"model.kind": "vib"})
    (workdir / "checkpoints").mkdir()
  elif name == "eval_without_checkpoint":
    (tmp_path / "run").mkdir()
  if (tmp_path / "data.npz").exists():
    paths["data"] = str(tmp_path / "data.npz")
  return paths


# (row, arguments after --config (placeholders {workdir}, {data}), exit
# status, the beginning of the message after "vib_flows: "). The rows of
# docs/errors.md, in its order.
ROWS = [
    ("unknown_field", [CONFIG, "--workdir={workdir}",
                       "--config.model.kindd=vib"], 2,
     "unknown config field --config.model.kindd: model has no field "
     "'kindd'; did you mean --config.model.kind?"),
    ("value_of_wrong_type", [CONFIG, "--workdir={workdir}",
                             "--config.train.num_epochs=abc"], 2,
     "flag --config.train.num_epochs=abc: invalid literal for int()"),
    ("unknown_flag", [CONFIG, "--workdir={workdir}", "--epochs=3"], 2,
     "Unknown command line flag 'epochs'"),
    ("unknown_mode", [CONFIG, "--workdir={workdir}", "--mode=fit"], 2,
     "flag --mode=fit: value should be one of <train|eval|export>"),
    ("extra_argument", [CONFIG, "--workdir={workdir}", "train"], 2,
     "unexpected arguments train"),
    ("missing_workdir", [CONFIG], 2, "--workdir is required"),
    ("missing_config_file", ["--config=configs/nope.py",
                             "--workdir={workdir}"], 2,
     "--config=configs/nope.py: no such file"),
    ("workdir_is_a_file", [CONFIG, "--workdir={workdir}"], 2,
     "--workdir {workdir} is a file, not a directory"),
    ("unknown_flow", [CONFIG, "--workdir={workdir}",
                      "--config.flow.name=plannar"], 2,
     "Unknown flow.name 'plannar'; valid: "),
    ("unknown_data_set", [CONFIG, "--workdir={workdir}",
                          "--config.data.name=mnits"], 2,
     "Unknown data set name data.name='mnits'"),
    ("nan_learning_rate", [CONFIG, "--workdir={workdir}",
                           "--config.optimizer.learning_rate=nan"], 2,
     "optimizer.learning_rate must be a finite number > 0, got nan."),
    ("zero_epochs", [CONFIG, "--workdir={workdir}",
                     "--config.train.num_epochs=0"], 2,
     "train.num_epochs must be >= 1, got 0"),
    ("batch_larger_than_data", [CONFIG, "--workdir={workdir}",
                                "--config.train.batch_size=100000"], 2,
     "train.batch_size=100000 exceeds the 1000 training examples"),
    ("num_classes_of_source", [CONFIG, "--workdir={workdir}",
                               "--config.data.num_classes=12"], 2,
     "data.num_classes=12, but data.name='digits' has 10 classes"),
    ("random_bytes", [CONFIG, "--workdir={workdir}",
                      "--config.data.name=npz:{data}"], 65,
     "npz file '{data}' is not a valid .npz/.zip archive"),
    ("idx_magic", [CONFIG, "--workdir={workdir}",
                   "--config.data.name=idx:{data}"], 65,
     "IDX file {data}/train-labels-idx1-ubyte: magic number 0x00000803, "
     "expected 0x00000801"),
    ("outside_support", [CONFIG, "--workdir={workdir}",
                         "--config.data.name=npz:{data}"], 65,
     "x_train has values outside 0..16"),
    ("stray_label", [CONFIG, "--workdir={workdir}", "--config.model.kind=vib",
                     "--config.data.name=npz:{data}", *TINY], 65,
     "y_train[7] = 50 makes 51 classes (the largest label + 1), but 40 of "
     "them (10..49) have no training example"),
    ("label_outside_num_classes", [
        CONFIG, "--workdir={workdir}", "--config.model.kind=vib",
        "--config.data.name=npz:{data}", "--config.data.num_classes=10",
        *TINY], 65,
     "y_test[3] = 12 is outside the classes 0..9 (data.num_classes=10)"),
    ("train_vae_in_vib_run", [CONFIG, "--workdir={workdir}"], 2,
     "{workdir} holds a VIB run; this config builds a VAE"),
    ("train_other_config", [CONFIG, "--workdir={workdir}",
                            "--config.model.kind=vib",
                            "--config.loss.beta=0.5"], 2,
     "Workdir {workdir} holds a run with a different config: loss.beta (1.0 "
     "in the run, 0.5 here)"),
    ("eval_vae_on_vib_run", [CONFIG, "--workdir={workdir}", "--mode=eval"], 2,
     "{workdir} holds a VIB run; this config builds a VAE"),
    ("eval_other_config", [CONFIG, "--workdir={workdir}", "--mode=eval",
                           "--config.model.kind=vib",
                           "--config.loss.beta=0.5"], 2,
     "--mode=eval: {workdir} was trained with another config: loss.beta "
     "(1.0 in the run, 0.5 here)"),
    ("eval_without_checkpoint", [CONFIG, "--workdir={workdir}",
                                 "--mode=eval"], 2,
     "No checkpoint in {workdir}: train first (--mode=train)."),
]
ROW_IDS = [row[0] for row in ROWS]
# Rows run again with --verbose: one refused by the flags, one by the data.
VERBOSE_ROWS = ["unknown_field", "random_bytes"]


def _listing(path):
  """What is at `path`: None, "file", or the sorted names in the directory."""
  if not os.path.lexists(path):
    return None
  if not os.path.isdir(path):
    return "file"
  return sorted(os.listdir(path))


def _run_row(row, tmp_path, *extra):
  """Runs the row's command; returns (its CompletedProcess, message)."""
  name, args, _, message = row
  paths = _setup(name, tmp_path)
  before = _listing(paths["workdir"])
  result = helpers.run_main([a.format(**paths) for a in args] + list(extra),
                            check=False, timeout=300)
  # The command leaves the workdir as it found it.
  assert _listing(paths["workdir"]) == before, (name, result.stderr[-3000:])
  return result, message.format(**paths)


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_mistake_ends_with_one_line_and_its_status(tmp_path, row):
  result, message = _run_row(row, tmp_path)
  context = result.stderr[-3000:]
  assert result.returncode == row[2], context
  last = helpers.last_line(result.stderr)
  assert last.startswith(f"vib_flows: {message}"), context
  assert "Traceback" not in result.stderr, context


@pytest.mark.parametrize("name", VERBOSE_ROWS)
def test_verbose_adds_the_traceback(tmp_path, name):
  row = ROWS[ROW_IDS.index(name)]
  result, message = _run_row(row, tmp_path, "--verbose")
  context = result.stderr[-3000:]
  assert result.returncode == row[2], context
  assert "Traceback (most recent call last)" in result.stderr, context
  last = helpers.last_line(result.stderr)
  assert last.startswith(f"vib_flows: {message}"), context


def test_unknown_config_field_is_refused(tmp_path):
  result = helpers.run_main(
      ["--config=configs/test.py", f"--workdir={tmp_path}",
       "--config.model.latent_dims=3"], check=False,
  )
  assert result.returncode != 0
  assert "latent_dims" in result.stderr


@pytest.mark.slow
def test_command_line_override_reaches_the_model(tmp_path):
  helpers.run_main([
      "--config=configs/test.py", f"--workdir={tmp_path}",
      "--config.model.latent_dim=3", "--config.train.num_epochs=1",
      "--config.export.enabled=False",
  ])
  assert helpers.read_json(tmp_path / "config.json")["model"]["latent_dim"] == 3
  shapes = dict(tf.train.list_variables(str(tmp_path / "checkpoints")))
  # Some variable of the model has the overridden latent size 3 as an axis.
  assert any(3 in shape for shape in shapes.values())
  assert not any(4 in shape for name, shape in shapes.items() if "model" in name
                 and len(shape) == 1 and shape[0] == 4)
  metrics = helpers.read_json(tmp_path / "metrics.json")
  assert {"test_elbo", "test_log_likelihood", "test_kl",
          "test_reconstruction"} <= set(metrics)


def test_console_script_is_installed():
  script = os.path.join(os.path.dirname(sys.executable), "vib-flows")
  # absl's help exits with status 1 by design; the flags tell it is ours
  # (listed under the module that defines them).
  result = subprocess.run([script, "--helpfull"], capture_output=True,
                          text=True, env=helpers.env(), timeout=120)
  assert "vib_flows.app.cli:" in result.stdout
  assert "--workdir" in result.stdout and "--mode" in result.stdout
