"""Results sweeps: train and evaluate a grid of configurations, tabulate.

  python -m vib_flows.sweep --sweep=vae_digits --workdir=DIR [--seeds=3] \
      [--epochs=N] [--importance_samples=K] [--only=none,planar4_global]
  python -m vib_flows.sweep --sweep=vib_digits --workdir=DIR [--seeds=3]
  python -m vib_flows.sweep --sweep=iaf_digits --workdir=DIR [--seeds=3]

Each configuration of the sweep trains once per seed in DIR/<config>/seed<k>/
(a normal run directory: config.json, checkpoints, best, tensorboard,
metrics.json). A run whose metrics.json exists is skipped, and an interrupted
run resumes from its checkpoint, so the same command continues an interrupted
sweep. Runs go seed-major (every configuration with seed 0, then seed 1, ...),
so a sweep stopped early still covers the whole grid.

After the runs (or with --report_only) the sweep writes
  DIR/results.json   every run's metrics and the mean +- std over seeds;
  DIR/results.md     the markdown tables (nats per image, training time);
  DIR/information_plane.png   (VIB) I(Z;X) upper vs I(Z;Y) lower bound.

Grids (`SWEEPS`):
  vae_digits: configs/vae_digits.py (17-level categorical likelihood, latent
    16, hidden 256) with no flow; planar K = 4 and 16; radial, IAF, the three
    Sylvester flows, RealNVP and spline with K = 4; each flow global and
    amortized. Test ELBO and the importance-weighted log-likelihood.
  vib_digits: configs/vib_digits.py (latent 16, encoder 256-256, classifier
    256) for beta in {1e-4, 1e-3, 1e-2, 1e-1}, without flow and with the
    config's 2 amortized IAF layers, plus a deterministic baseline: a plain
    Keras MLP with the same widths (encoder 256-256, a linear 16-unit
    bottleneck, classifier 256), the same optimizer, batch size, epochs and
    early stopping on the validation cross-entropy. Test accuracy averages
    p(y|z) over eval.vib_num_samples (12) posterior samples.
  iaf_digits: the IAF forget-bias ablation (`iaf_grid`).

Every run also records `model_diagnostics` of its best model: for flows
`log_det_max_error`, the largest difference, over posterior samples of test
images, between the flow's summed log-det and log|det| of its autodiff
Jacobian (`tf.GradientTape.batch_jacobian`), the check for a wrong log-det;
the active latent units (Burda et al. 2016) of z0 and zK and the spread of
the encoder and of the aggregate posteriors of z0 and zK on the test set; and
the training-set ELBO (VAE; 100 samples per image) or cross-entropy (VIB),
whose gap to the test set tells overfitting from underfitting. Runs finished
before these existed get them when the sweep command runs again.
"""

import json
import os
import platform
import sys
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

SWEEP_NAMES = ("vae_digits", "vib_digits", "iaf_digits")
VIB_BETAS = (1e-4, 1e-3, 1e-2, 1e-1)
DETERMINISTIC = "deterministic"

_CONFIG_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs"
)

# (name, flow.name, flow.num_flows) of the VAE grid; each flow global and
# amortized.
_VAE_FLOWS = (
    ("planar4", "planar", 4),
    ("planar16", "planar", 16),
    ("radial4", "radial", 4),
    ("iaf4", "iaf", 4),
    ("sylvester_orthogonal4", "sylvester_orthogonal", 4),
    ("sylvester_householder4", "sylvester_householder", 4),
    ("sylvester_triangular4", "sylvester_triangular", 4),
    ("real_nvp4", "real_nvp", 4),
    ("spline4", "spline", 4),
)


def vae_grid():
  """The VAE configurations: list of dicts name, base, overrides, label."""
  grid = [{"name": "none", "base": "vae_digits", "label": "no flow",
           "overrides": {"flow.num_flows": 0, "flow.amortized": False}}]
  for name, flow, k in _VAE_FLOWS:
    for amortized in (False, True):
      form = "amortized" if amortized else "global"
      grid.append({
          "name": f"{name}_{form}", "base": "vae_digits",
          "label": f"{flow} K={k} {form}",
          "overrides": {"flow.name": flow, "flow.num_flows": k,
                        "flow.amortized": amortized},
      })
  return grid


def vib_grid():
  """The VIB configurations (see the module docstring)."""
  grid = [{"name": DETERMINISTIC, "base": "vib_digits",
           "label": "deterministic MLP (same widths)", "overrides": {}}]
  for flow_label, overrides in (
      ("no flow", {"flow.num_flows": 0, "flow.amortized": False}),
      ("iaf K=2 amortized", {"flow.name": "iaf", "flow.num_flows": 2,
                             "flow.amortized": True}),
  ):
    short = "none" if flow_label == "no flow" else "iaf2_amortized"
    for beta in VIB_BETAS:
      grid.append({
          "name": f"{short}_beta{beta:g}", "base": "vib_digits",
          "label": flow_label, "beta": beta,
          "overrides": dict(overrides, **{"loss.beta": beta}),
      })
  return grid


IAF_FORGET_BIASES = (0.0, 1.0, 2.0, 4.0)


def iaf_grid():
  """The IAF ablation: K = 4 IAF layers on configs/vae_digits.py, global and
  amortized, for every forget bias in IAF_FORGET_BIASES (2 is the default).

  The bias sets the gate at initialization, sigma = sigmoid(bias): each layer
  starts as z' = sigma z + (1 - sigma) m(z), a contraction by sigma whose
  MADE output m enters scaled by 1 - sigma (0.12 at the default 2).
  """
  grid = []
  for amortized in (False, True):
    form = "amortized" if amortized else "global"
    for bias in IAF_FORGET_BIASES:
      grid.append({
          "name": f"iaf4_{form}_bias{bias:g}", "base": "vae_digits",
          "label": f"iaf K=4 {form}, forget bias {bias:g}",
          "overrides": {"flow.name": "iaf", "flow.num_flows": 4,
                        "flow.amortized": amortized,
                        "flow.forget_bias": bias},
      })
  return grid


SWEEPS = {"vae_digits": vae_grid, "vib_digits": vib_grid,
          "iaf_digits": iaf_grid}


# ------------------------------------------------------------------ configs
def make_config(entry, seed, epochs=0, importance_samples=0, base_config=None):
  """The ml_collections config of one run.

  Args:
    entry: a grid entry (`vae_grid`, `vib_grid`).
    seed: config.seed.
    epochs: train.num_epochs if > 0 (else the base config's).
    importance_samples: eval.num_importance_samples if > 0.
    base_config: a config to start from instead of configs/<entry base>.py
      (tests pass configs/test.py-sized networks this way).

  Returns:
    The config (export disabled: sweeps write no SavedModels).
  """
  if base_config is None:
    base_config = _base_config(entry["base"])
  config = base_config.copy_and_resolve_references()
  for key, value in entry["overrides"].items():
    section, field = key.split(".")
    config[section][field] = value
  config.seed = int(seed)
  if epochs:
    config.train.num_epochs = int(epochs)
  if importance_samples:
    config.eval.num_importance_samples = int(importance_samples)
  config.export.enabled = False
  return config


_BASE_CONFIGS = {}


def _base_config(name):
  """configs/<name>.py, read once per process.

  A sweep runs for a long time; reading the file once keeps every run of one
  sweep on the same protocol even if the file is edited meanwhile (runs of
  earlier invocations are checked by `protocol_mismatches`).
  """
  if name not in _BASE_CONFIGS:
    from vib_flows import config_files  # pylint: disable=g-import-not-at-top
    _BASE_CONFIGS[name] = config_files.load(
        os.path.join(_CONFIG_DIR, name + ".py"))
  return _BASE_CONFIGS[name]


def run_dir(workdir, name, seed):
  return os.path.join(workdir, name, f"seed{seed}")


def _read_json(path):
  with open(path) as f:
    return json.load(f)


# ------------------------------------------------------------------- checks
DIAGNOSTIC_KEYS = ("active_units_z0", "active_units_zk", "aggregate_std_zk")
TRAIN_ELBO_SAMPLES = 100


def model_diagnostics(model, splits, config):
  """What explains a run's numbers (`vib_flows.diagnostics`).

  Returns:
    dict: active_units_z0 / active_units_zk (+ activities) and
    encoder_scale_mean / aggregate_std_z0 / aggregate_std_zk on the test set;
    log_det_max_error / log_det_mean_abs (flows); train_elbo and
    train_log_likelihood (VAE, K = 100) or train_cross_entropy / train_kl
    (VIB) on the training set: the train/test gap.
  """
  from vib_flows import diagnostics  # pylint: disable=g-import-not-at-top
  from vib_flows import evaluate  # pylint: disable=g-import-not-at-top
  result = diagnostics.active_units(model, splits.test.x)
  result.update(diagnostics.aggregate_spread(model, splits.test.x))
  if len(model.flow):
    error, magnitude = diagnostics.log_det_error(model, splits.test.x)
    result.update(log_det_max_error=error, log_det_mean_abs=magnitude)
  if config.model.kind == "vae":
    elbo, log_lik = diagnostics.split_elbo(
        model, splits.train.x, TRAIN_ELBO_SAMPLES)
    result.update(train_elbo=elbo, train_log_likelihood=log_lik)
  else:
    terms = evaluate.mean_terms(model, splits.train, config)
    result.update(train_cross_entropy=terms["cross_entropy"],
                  train_kl=terms["kl"])
  return result


def backfill_diagnostics(directory):
  """Adds `model_diagnostics` to a finished run's metrics.json if missing.

  Restores the run's best checkpoint (`train.restore_run`). Returns the
  (updated) metrics dict.
  """
  from vib_flows import train  # pylint: disable=g-import-not-at-top
  from vib_flows import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  path = os.path.join(directory, "metrics.json")
  metrics = _read_json(path)
  if all(k in metrics for k in DIAGNOSTIC_KEYS):
    return metrics
  state = train.restore_run(directory)
  metrics.update(model_diagnostics(state.model, state.splits, state.config))
  workdir_lib.write_json_atomic(path, metrics)
  return metrics


# --------------------------------------------------------------------- runs
def train_model_run(config, directory):
  """Trains (resuming) and evaluates one VAE / VIB run; writes metrics.json.

  Uses `train.build_state`, `train.train`, `train.restore_best` and
  `evaluate.test_metrics`, so that training and evaluation are timed apart.

  Returns:
    The metrics dict (test metrics, train_seconds, eval_seconds, best_epoch,
    log_det_max_error for flows).
  """
  import keras  # pylint: disable=g-import-not-at-top
  from vib_flows import evaluate  # pylint: disable=g-import-not-at-top
  from vib_flows import train  # pylint: disable=g-import-not-at-top
  from vib_flows import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  keras.backend.clear_session()
  resumed = workdir_lib.prepare(directory, config)
  state = train.build_state(config, directory)
  start_step = state.step
  start = time.perf_counter()
  history = train.train(state, verbose=False)
  train_seconds = time.perf_counter() - start
  final_step = state.step
  train.restore_best(state)
  best_step = state.step
  start = time.perf_counter()
  metrics = evaluate.test_metrics(state.model, state.splits, config)
  eval_seconds = time.perf_counter() - start
  steps_per_epoch = state.splits.train.x.shape[0] // config.train.batch_size
  metrics.update(
      step=final_step, best_step=best_step, steps_this_run=final_step - start_step,
      best_epoch=best_step // steps_per_epoch,
      epochs_run=final_step // steps_per_epoch,
      train_seconds=train_seconds, eval_seconds=eval_seconds,
      resumed=bool(resumed and start_step > 0),
      validation_loss=[h["validation_loss"] for h in history],
  )
  metrics.update(model_diagnostics(state.model, state.splits, config))
  workdir_lib.write_json_atomic(os.path.join(directory, "metrics.json"),
                                metrics)
  return metrics


def deterministic_model(config, input_shape, num_classes):
  """Plain Keras MLP of the VIB's widths: encoder, linear bottleneck, classifier."""
  import keras  # pylint: disable=g-import-not-at-top
  m = config.model
  inputs = keras.Input(shape=tuple(input_shape), name="x")
  h = keras.layers.Flatten()(inputs)
  for i, width in enumerate(m.encoder_hidden):
    h = keras.layers.Dense(width, activation=m.activation,
                           name=f"encoder_{i}")(h)
  h = keras.layers.Dense(m.latent_dim, name="bottleneck")(h)
  for i, width in enumerate(m.decoder_hidden):
    h = keras.layers.Dense(width, activation=m.activation,
                           name=f"classifier_{i}")(h)
  logits = keras.layers.Dense(num_classes, name="logits")(h)
  return keras.Model(inputs, logits, name="deterministic")


def train_deterministic_run(config, directory):
  """Trains the deterministic baseline with `fit`; writes metrics.json.

  Same data (config.data), optimizer (config.optimizer), batch size, epochs
  and early stopping patience (on the validation cross-entropy, best weights
  restored) as the VIB runs. I(Z;X) is not bounded for a deterministic
  encoder; test_izy_lower = H(Y) - cross-entropy as for the VIB.
  """
  import keras  # pylint: disable=g-import-not-at-top
  from vib_flows import data as data_lib  # pylint: disable=g-import-not-at-top
  from vib_flows import evaluate  # pylint: disable=g-import-not-at-top
  from vib_flows import train  # pylint: disable=g-import-not-at-top
  from vib_flows import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  keras.backend.clear_session()
  os.makedirs(directory, exist_ok=True)
  workdir_lib.write_json_atomic(os.path.join(directory, "config.json"),
                                json.loads(config.to_json_best_effort()))
  splits = data_lib.load(config)
  keras.utils.set_random_seed(config.seed)
  model = deterministic_model(config, splits.info.input_shape,
                              splits.info.num_classes)
  model.compile(
      optimizer=train.make_optimizer(config.optimizer),
      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=["accuracy"],
      jit_compile=bool(config.train.jit_compile),
  )
  callbacks = []
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
  start = time.perf_counter()
  cross_entropy, accuracy = model.evaluate(
      splits.test.x, splits.test.y, batch_size=config.eval.batch_size,
      verbose=0)
  eval_seconds = time.perf_counter() - start
  val_loss = [float(v) for v in history.history["val_loss"]]
  h_y = evaluate.label_entropy(splits.train.y, splits.info.num_classes)
  metrics = {
      "test_accuracy": float(accuracy),
      "test_cross_entropy": float(cross_entropy),
      "test_izy_lower": h_y - float(cross_entropy), "label_entropy": h_y,
      "num_test_examples": int(splits.test.x.shape[0]),
      "best_epoch": int(np.argmin(val_loss)) + 1, "epochs_run": len(val_loss),
      "train_seconds": train_seconds, "eval_seconds": eval_seconds,
      "validation_loss": val_loss,
  }
  workdir_lib.write_json_atomic(os.path.join(directory, "metrics.json"),
                                metrics)
  return metrics


def run_one(entry, config, directory):
  """Runs one configuration and seed (skipped if metrics.json exists).

  A finished run from before `model_diagnostics` existed gets them added.

  Returns:
    (metrics dict, True if it ran now / False if it was already done).
  """
  path = os.path.join(directory, "metrics.json")
  if os.path.exists(path):
    if entry["name"] == DETERMINISTIC:
      return _read_json(path), False
    return backfill_diagnostics(directory), False
  if entry["name"] == DETERMINISTIC:
    return train_deterministic_run(config, directory), True
  return train_model_run(config, directory), True


def run_sweep(sweep, workdir, seeds=3, epochs=0, importance_samples=0,
              only=None, base_config=None, command=None, log=print):
  """Runs (or resumes) a sweep and writes results.json / results.md.

  Args:
    sweep: "vae_digits" or "vib_digits".
    workdir: the sweep directory.
    seeds: seeds 0 .. seeds - 1 per configuration.
    epochs: train.num_epochs override (0: the base config's).
    importance_samples: eval.num_importance_samples override (0: config's).
    only: names of the configurations to run (None: all).
    base_config: config to use instead of configs/<base>.py (tests).
    command: the command line recorded in the results.
    log: function printing one progress line.

  Returns:
    The results dict (also DIR/results.json).
  """
  grid = select(SWEEPS[sweep](), only)
  os.makedirs(workdir, exist_ok=True)
  for seed in range(seeds):
    for entry in grid:
      config = make_config(entry, seed, epochs, importance_samples,
                           base_config)
      directory = run_dir(workdir, entry["name"], seed)
      start = time.perf_counter()
      metrics, ran = run_one(entry, config, directory)
      log(f"[{sweep}] {entry['name']} seed {seed}: "
          f"{'done' if ran else 'skipped (metrics.json exists)'} in "
          f"{time.perf_counter() - start:.1f} s; {_headline(metrics)}")
  return write_results(sweep, workdir, seeds, epochs, importance_samples,
                       only, base_config, command)


def select(grid, only):
  """The grid entries named in `only` (all if empty); unknown names raise."""
  if not only:
    return grid
  names = [e["name"] for e in grid]
  unknown = sorted(set(only) - set(names))
  if unknown:
    raise ValueError(f"Unknown configurations {unknown}; valid: {names}.")
  return [e for e in grid if e["name"] in only]


def _headline(metrics):
  keys = ("test_elbo", "test_log_likelihood", "test_accuracy", "test_kl",
          "best_epoch", "train_seconds", "log_det_max_error")
  return " ".join(f"{k}={metrics[k]:.4g}" for k in keys
                  if isinstance(metrics.get(k), (int, float)))


# ------------------------------------------------------------------ results
SUMMARY_KEYS = ("test_elbo", "test_log_likelihood", "test_kl",
                "test_reconstruction", "test_accuracy", "test_cross_entropy",
                "test_izy_lower", "train_seconds", "eval_seconds",
                "best_epoch", "epochs_run", "log_det_max_error",
                "train_elbo", "train_log_likelihood", "train_cross_entropy",
                "train_kl", "active_units_z0", "active_units_zk",
                "encoder_scale_mean", "aggregate_std_z0", "aggregate_std_zk",
                "log_det_mean_abs")


def mean_std(values):
  """{"mean", "std" (sample std, ddof=1; 0 for one value), "n"}."""
  values = np.asarray(values, np.float64)
  std = float(values.std(ddof=1)) if values.size > 1 else 0.0
  return {"mean": float(values.mean()), "std": std, "n": int(values.size)}


def machine():
  """A short description of this machine (CPU, cores, TensorFlow)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  gpus = tf.config.list_physical_devices("GPU")
  return (f"{cpu}, {os.cpu_count()} CPU cores, {len(gpus)} GPU; Python "
          f"{platform.python_version()}, TensorFlow {tf.__version__}")


def write_results(sweep, workdir, seeds, epochs=0, importance_samples=0,
                  only=None, base_config=None, command=None):
  """Collects DIR/<config>/seed<k>/metrics.json into results.json / .md."""
  grid = select(SWEEPS[sweep](), only)
  configs = []
  for entry in grid:
    config = make_config(entry, 0, epochs, importance_samples, base_config)
    runs = {}
    for seed in range(seeds):
      path = os.path.join(run_dir(workdir, entry["name"], seed), "metrics.json")
      if os.path.exists(path):
        runs[str(seed)] = _read_json(path)
    summary = {}
    for key in SUMMARY_KEYS:
      values = [r[key] for r in runs.values()
                if isinstance(r.get(key), (int, float))
                and not isinstance(r.get(key), bool)]
      if values:
        summary[key] = mean_std(values)
    mismatches = protocol_mismatches(workdir, entry["name"],
                                     [int(k) for k in runs])
    configs.append(dict(
        entry, protocol_mismatches=mismatches, num_epochs=int(config.train.num_epochs),
        warmup_steps=int(config.loss.warmup_steps),
        early_stopping_patience=int(config.train.early_stopping_patience),
        num_importance_samples=int(config.eval.num_importance_samples),
        vib_num_samples=int(config.eval.vib_num_samples),
        runs=runs, summary=summary))
  results = {"sweep": sweep, "seeds": seeds, "command": command,
             "machine": machine(), "configs": configs}
  from vib_flows import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  workdir_lib.write_json_atomic(os.path.join(workdir, "results.json"), results)
  if sweep == "vib_digits":
    points = information_plane_points(configs)
    if points:
      from vib_flows import plots  # pylint: disable=g-import-not-at-top
      plots.save_information_plane(
          points, os.path.join(workdir, "information_plane.png"),
          levels=information_plane_levels(configs))
  text = markdown(results)
  tmp = os.path.join(workdir, ".results.md.tmp")
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, os.path.join(workdir, "results.md"))
  return results


# Sections / train fields that may differ between the seeds of one
# configuration (how a run is executed, not what it learns).
_NOT_PROTOCOL = ("seed", "runtime", "export", "eval")
_NOT_PROTOCOL_TRAIN = ("overwrite", "checkpoint_every_steps", "jit_compile")


def _protocol(config_json):
  """The learning part of a run's config.json (what must match across seeds)."""
  from vib_flows import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  config_json = workdir_lib.with_added_fields(config_json)
  protocol = {k: v for k, v in config_json.items() if k not in _NOT_PROTOCOL}
  protocol["train"] = {k: v for k, v in config_json.get("train", {}).items()
                       if k not in _NOT_PROTOCOL_TRAIN}
  return protocol


def protocol_mismatches(workdir, name, seeds):
  """Seeds of configuration `name` whose config.json differs from the first's.

  Returns:
    Sorted list of (seed, differing top-level sections).
  """
  first, found = None, []
  for seed in seeds:
    path = os.path.join(run_dir(workdir, name, seed), "config.json")
    if not os.path.exists(path):
      continue
    protocol = _protocol(_read_json(path))
    if first is None:
      first = protocol
    elif protocol != first:
      sections = sorted(k for k in set(first) | set(protocol)
                        if first.get(k) != protocol.get(k))
      found.append((seed, sections))
  return found


def information_plane_points(configs):
  """Mean (I(Z;X) upper, I(Z;Y) lower) of every VIB configuration with a beta."""
  points = []
  for c in configs:
    s = c["summary"]
    if "beta" in c and "test_kl" in s and "test_izy_lower" in s:
      points.append({"beta": c["beta"], "izx": s["test_kl"]["mean"],
                     "izy": s["test_izy_lower"]["mean"], "label": c["label"]})
  return points


def information_plane_levels(configs):
  """Dashed reference lines of the information plane: the deterministic
  baseline's H(Y) - CE (mean over seeds); its I(Z;X) is not bounded."""
  levels = {}
  for c in configs:
    if c["name"] == DETERMINISTIC and "test_izy_lower" in c["summary"]:
      levels["deterministic MLP: H(Y) - CE"] = (
          c["summary"]["test_izy_lower"]["mean"])
  return levels


def _pm(summary, key, scale=1.0, digits=2, negate=False):
  if key not in summary:
    return "-"
  s = summary[key]
  mean = -s["mean"] if negate else s["mean"]
  return f"{scale * mean:.{digits}f} ± {scale * s['std']:.{digits}f}"


def markdown(results):
  """The markdown tables of a results dict (see `write_results`)."""
  configs = results["configs"]
  lines = []
  first = configs[0] if configs else {}
  if results["sweep"] != "vib_digits":
    lines.append(
        f"VAE on the digits (test set, {first.get('num_importance_samples')} "
        f"importance samples; {first.get('num_epochs')} epochs, KL warm-up "
        f"{first.get('warmup_steps')} steps, best validation checkpoint; "
        f"mean ± std over seeds; nats per image, lower is better)")
    lines.append("")
    lines.append("| posterior | -ELBO | -log p(x) (IW) | KL | train -ELBO "
                 "| active units | best epoch "
                 "| train time (s) | log-det error | seeds |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for c in configs:
      s = c["summary"]
      lines.append(
          f"| {c['label']} | {_pm(s, 'test_elbo', negate=True)} "
          f"| {_pm(s, 'test_log_likelihood', negate=True)} "
          f"| {_pm(s, 'test_kl')} | {_pm(s, 'train_elbo', negate=True)} "
          f"| {_pm(s, 'active_units_zk', digits=1)} "
          f"| {_pm(s, 'best_epoch', digits=0)} "
          f"| {_pm(s, 'train_seconds', digits=0)} "
          f"| {_max_error(c)} | {len(c['runs'])} |")
  else:
    lines.append(
        f"VIB on the digits (test set; accuracy from "
        f"{first.get('vib_num_samples')} posterior samples; up to "
        f"{first.get('num_epochs')} epochs, early stopping patience "
        f"{first.get('early_stopping_patience')}; mean ± std over seeds; "
        f"nats)")
    lines.append("")
    lines.append("| model | beta | accuracy (%) | error (%) | cross-entropy "
                 "| I(Z;X) <= KL | I(Z;Y) >= H(Y) - CE | best epoch "
                 "| train time (s) | seeds |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for c in configs:
      s = c["summary"]
      beta = f"{c['beta']:g}" if "beta" in c else "-"
      error = "-"
      if "test_accuracy" in s:
        acc = s["test_accuracy"]
        error = f"{100 * (1 - acc['mean']):.2f} ± {100 * acc['std']:.2f}"
      lines.append(
          f"| {c['label']} | {beta} | {_pm(s, 'test_accuracy', 100)} "
          f"| {error} | {_pm(s, 'test_cross_entropy', digits=3)} "
          f"| {_pm(s, 'test_kl')} | {_pm(s, 'test_izy_lower', digits=3)} "
          f"| {_pm(s, 'best_epoch', digits=0)} "
          f"| {_pm(s, 'train_seconds', digits=0)} | {len(c['runs'])} |")
  lines.append("")
  mixed = [c["name"] for c in configs if c.get("protocol_mismatches")]
  if mixed:
    lines.append(
        "WARNING: the runs of " + ", ".join(mixed) + " were trained with "
        "different configs (the config file changed between runs); see "
        "protocol_mismatches in results.json.")
    lines.append("")
  if results.get("command"):
    lines.append(f"Command: `{results['command']}`")
    lines.append("")
  lines.append(f"Machine: {results['machine']}.")
  lines.append("")
  return "\n".join(lines)


def _max_error(config):
  errors = [r["log_det_max_error"] for r in config["runs"].values()
            if "log_det_max_error" in r]
  return f"{max(errors):.1e}" if errors else "-"


# --------------------------------------------------------------------- main
_SWEEP = flags.DEFINE_enum("sweep", None, list(SWEEP_NAMES), "Which sweep.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep directory.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds per configuration (0..N-1).")
_EPOCHS = flags.DEFINE_integer(
    "epochs", 0, "train.num_epochs of every run (0: the config's).")
_IMPORTANCE = flags.DEFINE_integer(
    "importance_samples", 0,
    "eval.num_importance_samples (0: the config's, 5000).")
_ONLY = flags.DEFINE_list("only", [], "Configurations to run (default all).")
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only", False, "Only write results.* from finished runs.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  import keras  # pylint: disable=g-import-not-at-top
  keras.config.disable_interactive_logging()  # No progress bars in logs.
  command = "python -m vib_flows.sweep " + " ".join(
      a for a in sys.argv[1:] if not a.startswith("--report_only"))
  kwargs = dict(seeds=_SEEDS.value, epochs=_EPOCHS.value,
                importance_samples=_IMPORTANCE.value,
                only=_ONLY.value or None, command=command)
  if _REPORT_ONLY.value:
    write_results(_SWEEP.value, _WORKDIR.value, **kwargs)
  else:
    run_sweep(_SWEEP.value, _WORKDIR.value,
              log=lambda line: print(line, flush=True), **kwargs)
  print(open(os.path.join(_WORKDIR.value, "results.md")).read())


if __name__ == "__main__":
  flags.mark_flags_as_required(["sweep", "workdir"])
  logging.set_verbosity(logging.WARNING)
  app.run(main)
