"""The shared test builders and helpers: one version of each.

- configs: `config` (a shipped config with overrides), `run_config` (the
  tiny run of configs/test.py, without export), `small_config` (small
  networks, for models built without data), the overrides `VIB` and `EMA`,
  the command line's `TINY_RUN_FLAGS`;
- models and their inputs: `small_model`, `data_info`, `digits_batch`;
- runs: `build_state`, `one_epoch_then_resume`, `values`; the checkpoints
  (`checkpoint_step`, `checkpoint_values`, `final_weights`,
  `assert_same_variables`) and the TensorBoard scalars (`logged_scalars`)
  of a workdir;
- processes: `env`, `run_main`, `main_command`, `start`, `last_line`,
  `phases_logged`, `read_json`, `free_ports`;
- disks: `tmpfs`, `fill`;
- flows: `check_sample_axis_slices`;
- attacks: `BumpClassifier` (a loss that one FGSM step jumps over).

tests/serving_requests.py builds the test exports; tests/app/conftest.py
holds the fixtures several application test files share.
"""

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import types

from tests import warm_processes
from vib_flows.app import config_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")


# ------------------------------------------------------------------ configs
def config(name="test", **overrides):
  """Loads configs/NAME.py and applies the overrides.

  Keys are "section.field" (as dict keys: `**{"train.num_epochs": 2}`),
  "section__field" (as keywords: `train__num_epochs=2`) or a top-level field
  (`seed=3`).
  """
  cfg = config_files.load(os.path.join(CONFIGS, f"{name}.py"))
  for key, value in overrides.items():
    path = key.split("__") if "__" in key else key.split(".")
    if len(path) == 1:
      cfg[path[0]] = value
    else:
      section, field = path
      cfg[section][field] = value
  return cfg


def run_config(**overrides):
  """configs/test.py without the export: the tiny run the run tests train.

  10 steps an epoch on the digits (1000 training examples, batches of 100).
  """
  return config("test", **{"export.enabled": False, **overrides})


# Overrides that make configs/test.py a VIB (labels, inputs scaled to [0, 1]).
VIB = {"model.kind": "vib", "data.preprocess": "scale"}

# Overrides of `run_config`: one epoch with a moving average of the weights.
EMA = {"train.ema_decay": 0.9, "train.num_epochs": 1}

# The command line's tiny run: one epoch, a cheap test evaluation, no export.
TINY_RUN_FLAGS = ["--config.train.num_epochs=1",
                  "--config.export.enabled=False",
                  "--config.eval.num_importance_samples=2",
                  "--config.eval.importance_chunk_size=2"]


def small_config(kind="vae", **overrides):
  """configs/default.py with small networks, for a model without data.

  Latent size 4, encoder and decoder of one hidden layer of 16, a context of
  8, flows of 8 hidden units and a mixture prior (if chosen) of 3
  components; build it on `data_info()`.
  """
  return config("default", **{
      "model.kind": kind, "model.latent_dim": 4,
      "model.encoder_hidden": (16,), "model.decoder_hidden": (16,),
      "model.context_dim": 8, "flow.hidden_units": 8,
      "model.prior_components": 3, **overrides})


def small_model(kind="vae", info=None, **overrides):
  """The model of `small_config(kind, **overrides)` on `info` (data_info())."""
  from vib_flows.app import model_builder  # pylint: disable=g-import-not-at-top
  return model_builder.build_model(small_config(kind, **overrides),
                                   info or data_info())


def data_info(input_shape=(64,), num_classes=10, num_levels=17, **fields):
  """What the model builder reads of `data.DataInfo` (digits-like default)."""
  return types.SimpleNamespace(input_shape=tuple(input_shape),
                               num_classes=num_classes, num_levels=num_levels,
                               **fields)


def digits_batch(n=6, shape=(64,), seed=0):
  """{"x": levels 0..16 float32 [n, *shape], "y": labels 0..9 int32 [n]}."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  return {"x": rng.integers(0, 17, size=(n, *shape)).astype("float32"),
          "y": rng.integers(0, 10, size=n).astype("int32")}


VIRTUAL_CPUS = 2


def two_cpu_config(strategy):
  """The tiny config on `strategy` over 2 logical CPUs, without export.

  The first call in a process also creates the logical CPUs, which must
  happen before TensorFlow initializes its devices (run it in its own process).
  """
  from vib_flows.app import distribute  # pylint: disable=g-import-not-at-top
  cfg = run_config()
  cfg.runtime.virtual_cpu_devices = VIRTUAL_CPUS
  cfg.runtime.strategy = strategy
  distribute.configure_devices(cfg.runtime)
  return cfg


# --------------------------------------------------------------------- runs
def build_state(workdir, **overrides):
  """The `run_state.State` of `run_config(**overrides)` in `workdir`."""
  from vib_flows.app import run_state  # pylint: disable=g-import-not-at-top
  return run_state.build_state(run_config(**overrides), str(workdir))


def values(variables):
  """Copies of the variables' values, as numpy arrays."""
  return [v.numpy().copy() for v in variables]


def one_epoch_then_resume(workdir):
  """Trains `run_config` one epoch, then builds the state to train a second.

  Returns:
    (path of the epoch's checkpoint, the restored `run_state.State`).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from vib_flows.app import modes  # pylint: disable=g-import-not-at-top
  from vib_flows.app import run_state  # pylint: disable=g-import-not-at-top
  cfg = run_config(**{"train.num_epochs": 1})
  modes.train_and_evaluate(cfg, workdir)
  good = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
  cfg.train.num_epochs = 2
  return good, run_state.build_state(cfg, workdir)


def checkpoint_step(workdir):
  """The step of the run's latest checkpoint (0 without one)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  path = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
  return int(path.rsplit("-", 1)[1]) if path else 0


def checkpoint_values(workdir=None, path=None, prefixes=None):
  """{name: value} of a checkpoint (default: the run's latest).

  All variables but the save counter, or those whose names start with one of
  `prefixes` ("model/", "best_weights/").
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  path = path or tf.train.latest_checkpoint(
      os.path.join(workdir, "checkpoints"))
  reader = tf.train.load_checkpoint(path)
  return {name: reader.get_tensor(name)
          for name, _ in tf.train.list_variables(path)
          if (name.startswith(prefixes) if prefixes else
              not name.startswith(("save_counter", "_CHECKPOINTABLE")))}


def final_weights(workdir):
  """{name: array} of the model's variables in the run's latest checkpoint.

  The weights and the kept best weights.
  """
  return checkpoint_values(workdir, prefixes=("model/", "best_weights/"))


def assert_same_variables(got_dir, want_dir):
  """Every variable of the two runs' latest checkpoints (but the counter)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  got, want = (checkpoint_values(d) for d in (got_dir, want_dir))
  assert got.keys() == want.keys() and len(got) > 10
  for name, value in want.items():
    np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-9,
                               err_msg=name)


def logged_scalars(workdir):
  """{(tag, step): value} of the scalars in DIR/tensorboard's event files."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  logged = {}
  for path in tf.io.gfile.glob(os.path.join(workdir, "tensorboard", "*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == "scalars":
          logged[(value.tag, event.step)] = float(
              tf.make_ndarray(value.tensor))
  return logged


# ---------------------------------------------------------------- processes
def env():
  """Environment of a child process: quiet TF, the repo importable."""
  child = dict(os.environ)
  child["TF_CPP_MIN_LOG_LEVEL"] = "2"
  child["PYTHONPATH"] = ROOT + os.pathsep + child.get("PYTHONPATH", "")
  child.pop("TF_CONFIG", None)
  return child


def run_main(args, timeout=600, check=True, extra_env=None):
  """Runs `python -m vib_flows.main ARGS`; returns the CompletedProcess."""
  child = env()
  child.update(extra_env or {})
  result = warm_processes.run(
      [sys.executable, "-m", "vib_flows.main", *args], cwd=ROOT, env=child,
      capture_output=True, text=True, timeout=timeout,
  )
  if check and result.returncode:
    raise AssertionError(
        f"main failed ({result.returncode}):\n{result.stderr[-4000:]}"
    )
  return result


def main_command(workdir, *extra):
  """The command line of a 6-epoch run of configs/test.py (60 steps).

  Checkpoints every 5 steps, no export; `extra` flags follow.
  """
  return [
      sys.executable, "-m", "vib_flows.main", "--config=configs/test.py",
      f"--workdir={workdir}", "--config.train.num_epochs=6",
      "--config.train.checkpoint_every_steps=5",
      "--config.export.enabled=False", *extra,
  ]


def start(command, extra_env=None):
  """Starts `command` (stderr piped, text); returns the Popen."""
  child = env()
  child.update(extra_env or {})
  return warm_processes.popen(command, cwd=ROOT, env=child,
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)


def last_line(stderr):
  """The last line of a process's stderr ("" if it wrote nothing)."""
  lines = stderr.strip().splitlines()
  return lines[-1] if lines else ""


def last_message(stderr):
  """The last "vib_flows: ..." line of a process's stderr ("" if none).

  In a multi-worker run TensorFlow's C++ runtime may log after it: a worker
  whose process is ending while the chief (the coordination service's
  leader) has already exited logs its failed heartbeat.
  """
  lines = [line for line in stderr.splitlines()
           if line.startswith("vib_flows: ")]
  return lines[-1] if lines else ""


def phases_logged(stderr):
  """The phases a run logged ("Phase: loading the data", ...), in order."""
  return re.findall(r"Phase: ([a-z ]+)$", stderr, flags=re.M)


def read_json(path):
  with open(path) as f:
    return json.load(f)


def free_ports(n):
  """N free TCP ports on localhost."""
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(("localhost", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


# -------------------------------------------------------------------- disks
@contextlib.contextmanager
def tmpfs(path, size):
  """A tmpfs of `size` mounted at `path` (skips where mounting is refused)."""
  import pytest  # pylint: disable=g-import-not-at-top
  path.mkdir()
  mounted = subprocess.run(
      ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
      capture_output=True, text=True, check=False)
  if mounted.returncode:
    pytest.skip(f"cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): "
                f"{mounted.stderr.strip()}")
  try:
    yield path
  finally:
    subprocess.run(["umount", "-l", str(path)], check=True)


def fill(directory, leave):
  """Fills the file system of `directory` up to `leave` free bytes."""
  stat = os.statvfs(directory)
  with open(directory / "filler", "wb") as f:
    f.write(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))


# -------------------------------------------------------------------- flows
def check_sample_axis_slices(layer, amortized, context_dim, seed):
  """A float64 flow on z [3, 4, 5] with context [4, C] equals its slices.

  z [S, B, d] with context [B, C] gives slice s = layer(z[s], context); one
  point z [d] (context [C]) gives a scalar log-det; amortized flows also take
  z [B, d] with context [S, B, C] (slice s: layer(z, context[s])), each
  context its own flow; leading shapes that do not broadcast are refused.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  import pytest  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  num_samples, batch, dim = 3, 4, 5
  rng = np.random.default_rng(seed)
  z = tf.constant(rng.normal(size=(num_samples, batch, dim)))
  context = tf.constant(rng.normal(size=(batch, context_dim)))
  y, log_det = layer(z, context=context)
  assert y.shape == (num_samples, batch, dim)
  assert log_det.shape == (num_samples, batch)
  for s in range(num_samples):
    y_s, log_det_s = layer(z[s], context=context)
    np.testing.assert_allclose(y[s], y_s, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(log_det[s], log_det_s, rtol=1e-12, atol=1e-12)
  y_1, log_det_1 = layer(z[1, 2], context=context[2])
  assert y_1.shape == (dim,) and log_det_1.shape == ()
  np.testing.assert_allclose(y_1, y[1, 2], rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(log_det_1, log_det[1, 2], rtol=1e-12, atol=1e-12)
  if not amortized:
    return
  contexts = tf.constant(rng.normal(size=(num_samples, batch, context_dim)))
  y_c, log_det_c = layer(z[0], context=contexts)
  assert y_c.shape == (num_samples, batch, dim)
  for s in range(num_samples):
    y_s, log_det_s = layer(z[0], context=contexts[s])
    np.testing.assert_allclose(y_c[s], y_s, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(log_det_c[s], log_det_s, rtol=1e-12,
                               atol=1e-12)
  # Each context gives its own flow.
  assert np.max(np.abs(log_det_c[0] - log_det_c[1])) > 1e-6
  with pytest.raises(ValueError, match=r"\(3, 4, 5\).*\(2, 3\)"):
    layer(z, context=context[:2])


class BumpClassifier:
  """Two classes; the logit of class 1 is a narrow bump beside the input.

  log p(1|x) - log p(0|x) = -1 + 3 exp(-((x_0 - 0.5375) / 0.04)^2): class 0
  at x_0 = 0.5 and far from 0.5375, class 1 within 0.04 of it. From 0.5 the
  gradient points to the bump; one step of 0.2 jumps over it (masking), steps
  of 0.025 land on it.
  """

  def predict_proba(self, x, num_samples, seed, example_index=None):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    del num_samples, seed, example_index
    margin = -1.0 + 3.0 * tf.exp(-tf.square((x[:, 0] - 0.5375) / 0.04))
    return tf.nn.softmax(tf.stack([tf.zeros_like(margin), margin], -1))


class SaturatedClassifier:
  """Two classes of logits 1000 (0.5 - x_0) and 1000 (x_0 - 0.5).

  At x_0 = 0.7 the logit gap is 400: the softmax of the other class
  underflows to 0 in float32, so -log p(y|x) has an all-zero gradient there,
  while the logit gap's gradient is 2000 on x_0.
  """

  def predict_logits(self, x, num_samples, seed, example_index=None):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    del num_samples, seed, example_index
    gap = 1000.0 * (x[:, 0] - 0.5)
    return tf.stack([-gap, gap], -1)[tf.newaxis]  # [1, B, 2]

  def predict_proba(self, x, num_samples, seed, example_index=None):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    logits = self.predict_logits(x, num_samples, seed, example_index)
    return tf.reduce_mean(tf.nn.softmax(logits, -1), 0)
