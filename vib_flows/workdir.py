"""The run directory: config.json, metrics.json, atomic writes, reuse rules.

Layout of DIR (`--workdir`):
  config.json         the resolved config of the run
  checkpoints/        latest checkpoints (tf.train.CheckpointManager), each
                      with the weights of the best validation loss so far
  best/               runs made before the best weights were kept in the
                      checkpoints: the best-validation checkpoint
  tensorboard/        TensorBoard event files
  metrics.json        test metrics after training or --mode=eval
  *.png               reconstructions, samples, information plane

A second run of the same command in the same DIR resumes; a run with another
config is refused unless `train.overwrite` is set, so an earlier run's results
are never overwritten silently.
"""

import json
import os
import tempfile

import tensorflow as tf

# Fields that may change between runs in one workdir without making it a
# different run (how and where it runs, not what it learns).
_RUNTIME_FIELDS = ("runtime", "export", "eval")
_RUNTIME_TRAIN_FIELDS = (
    "num_epochs", "overwrite", "checkpoint_every_steps", "steps_per_call",
    "checkpoint_every_epochs", "image_summaries_every_epochs")
# Fields added to configs/default.py after runs were made without them, with
# the value that reproduces those runs: a config.json that lacks one matches a
# config holding this value (so such runs still resume).
ADDED_FIELDS = {
    ("flow", "forget_bias"): 2.0,
    ("model", "decoder"): "learned",
    ("train", "steps_per_call"): 1,
    ("train", "checkpoint_every_epochs"): 1,
    ("train", "image_summaries_every_epochs"): 1,
    ("flow", "module"): "",
    ("flow", "options"): {},
}


# Stacks of these flows alternate the order of z between layers. Runs made
# before the order was reversed by `Reverse` layers in the stack (config.json
# without flow.options) reversed it inside the layers: their checkpoints hold
# the same variables, which would load without error into layers that now
# mean another order.
_REORDERED_FLOWS = ("iaf", "maf", "real_nvp", "spline")


def check_loadable(config_dict, workdir):
  """Refuses a run whose checkpoints the current flow stack cannot load.

  Args:
    config_dict: the run's config.json, as a dict.
    workdir: the run directory (named in the error).

  Raises:
    ValueError: the run stacks two or more iaf/maf/real_nvp/spline layers and
      was made before the stacks held Reverse layers.
  """
  flow = config_dict.get("flow", {})
  if ("options" not in flow and flow.get("name") in _REORDERED_FLOWS
      and int(flow.get("num_flows", 0)) >= 2):
    raise ValueError(
        f"The run in {workdir} stacks {flow['num_flows']} {flow['name']} "
        "layers and was made by a vib_flows that reversed the order of z "
        "inside each layer; stacks now hold Reverse layers between the flows, "
        "so its checkpoints would load into layers of another meaning. Train "
        "it again in a new --workdir.")


def write_json_atomic(path, obj):
  """Writes `obj` as JSON to `path` via a temporary file and a rename."""
  directory = os.path.dirname(os.path.abspath(path))
  tf.io.gfile.makedirs(directory)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
  try:
    with os.fdopen(fd, "w") as f:
      json.dump(obj, f, indent=2, sort_keys=True)
      f.write("\n")
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def with_added_fields(config_dict):
  """`config_dict` with the ADDED_FIELDS it lacks, at their old values."""
  result = dict(config_dict)
  for (section, field), value in ADDED_FIELDS.items():
    if isinstance(result.get(section), dict) and field not in result[section]:
      result[section] = dict(result[section], **{field: value})
  return result


def _learning_fields(config_dict):
  config_dict = with_added_fields(config_dict)
  result = {k: v for k, v in config_dict.items() if k not in _RUNTIME_FIELDS}
  result["train"] = {
      k: v for k, v in config_dict.get("train", {}).items()
      if k not in _RUNTIME_TRAIN_FIELDS
  }
  return result


def prepare(workdir, config, write=True):
  """Creates `workdir` and writes config.json, refusing to mix runs.

  Args:
    workdir: the run directory.
    config: the resolved ml_collections config.
    write: write config.json (the chief only).

  Returns:
    True when the directory already held this run (training resumes).

  Raises:
    ValueError: the workdir holds a run of a different config and
      `train.overwrite` is not set.
  """
  tf.io.gfile.makedirs(workdir)
  path = os.path.join(workdir, "config.json")
  new = json.loads(config.to_json_best_effort())
  resumed = False
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      old = json.load(f)
    check_loadable(old, workdir)
    if _learning_fields(old) != _learning_fields(new):
      if not config.train.overwrite:
        changed = sorted(
            k for k in set(old) | set(new)
            if _learning_fields(old).get(k) != _learning_fields(new).get(k)
        )
        raise ValueError(
            f"Workdir {workdir} holds a run with a different config (sections "
            f"{', '.join(changed)} differ). Use a new --workdir, or pass "
            "--config.train.overwrite=True to start over there."
        )
      clear_run(workdir)
    else:
      resumed = True
  if write:
    write_json_atomic(path, new)
  return resumed


def clear_run(workdir):
  """Removes an earlier run's checkpoints and results from `workdir`."""
  for name in ("checkpoints", "best", "tensorboard"):
    path = os.path.join(workdir, name)
    if tf.io.gfile.exists(path):
      tf.io.gfile.rmtree(path)
  for name in ("metrics.json", "config.json"):
    path = os.path.join(workdir, name)
    if tf.io.gfile.exists(path):
      tf.io.gfile.remove(path)
