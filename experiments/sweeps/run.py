"""Running a sweep: each configuration and seed trained once, resumable.

Each configuration trains once per seed in DIR/<config>/seed<k>/ (a normal run
directory: config.json, checkpoints, best, tensorboard, metrics.json). A run
whose metrics.json exists is skipped, and an interrupted run resumes from its
checkpoint, so the same command continues an interrupted sweep. Runs go
seed-major (every configuration with seed 0, then seed 1, ...), so a sweep
stopped early still covers the whole grid.

Every run also records `model_diagnostics` of its best model: for flows
`log_det_max_error`, the largest difference, over posterior samples of test
images, between the flow's summed log-det and log|det| of its autodiff
Jacobian (`tf.GradientTape.batch_jacobian`), the check for a wrong log-det;
the active latent units (Burda et al. 2016) of z0 and zK and the spread of
the encoder and of the aggregate posteriors of z0 and zK on the test set; and
the training-set ELBO (VAE; TRAIN_ELBO_SAMPLES samples per image) or
cross-entropy (VIB), whose gap to the test set tells overfitting from
underfitting. Runs finished before these existed get them when the sweep
command runs again (`backfill_diagnostics`).

Every VAE run on real data also records `validation_metrics`: the ELBO and
the importance-weighted log p(x) of its best model on the validation split,
with the run's own K (`eval.num_importance_samples`), the same estimators as
its test numbers. The best single-sample validation -ELBO that early stopping
tracks is a noisy criterion (one posterior sample per image, 350 images); the
K-sample validation -log p(x) is the less noisy one, and the same quantity the
tables report on the test set. Runs finished before they existed get them
the same way as the diagnostics.

Runs on data from a known model (the "synthetic:*" data sets) also record the
exact-likelihood metrics of `vib_flows.data.exact_test_metrics`
(test_exact_log_likelihood, test_exact_gap = exact log p(x) - ELBO,
test_exact_iw_gap), unless the evaluator already wrote them. The exact
log p(x) of the fixed test set is the same for every run of one data set: it
is computed once by quadrature and kept in
DIR/exact_log_likelihood_<variant>.npy.
"""

from collections.abc import Callable
from collections.abc import Sequence
import dataclasses
import os
import time
from typing import Any

import keras
import ml_collections
import numpy as np

from experiments import diagnostics
from experiments.sweeps import aggregate
from experiments.sweeps import attack
from experiments.sweeps import baseline
from experiments.sweeps import grids
from experiments.sweeps import run_history
from vib_flows import data
from vib_flows.app import config_checks
from vib_flows.app import epoch_loop
from vib_flows.app import evaluate
from vib_flows.app import model_builder
from vib_flows.app import run_state
from vib_flows.app import workdir as workdir_lib
from vib_flows.data import preprocess
from vib_flows.data import synthetic as synthetic_data

Metrics = dict[str, Any]

DIAGNOSTIC_KEYS = ("active_units_z0", "active_units_zk", "aggregate_std_zk")
VALIDATION_KEYS = ("validation_elbo", "validation_log_likelihood")
EXACT_KEYS = ("test_exact_log_likelihood", "test_exact_gap",
              "test_exact_iw_gap")
TRAIN_ELBO_SAMPLES = 100
# What `run_one` did, as the sweep's progress line says it.
TRAINED = "trained"
SKIPPED = "skipped (metrics.json exists)"
_HEADLINE_KEYS = ("test_elbo", "test_log_likelihood", "test_accuracy",
                  "test_kl", "best_epoch", "train_seconds",
                  "log_det_max_error", "test_exact_gap")


def exact_cache_path(directory: str, data_name: str) -> str:
  """DIR/exact_log_likelihood_<variant>.npy of run directory DIR/<c>/seed<k>."""
  sweep_dir = os.path.dirname(os.path.dirname(os.path.abspath(directory)))
  variant = str(data_name).split(":")[-1]
  return os.path.join(sweep_dir, f"exact_log_likelihood_{variant}.npy")


def exact_metrics(splits: Any, metrics: Metrics, cache_path: str) -> Metrics:
  """`data.exact_test_metrics` with log p(x) of the test set cached on disk.

  Args:
    splits: the run's `DataSplits`; {} is returned for real data (no
      `exact_log_likelihood`).
    metrics: its test metrics (test_elbo, test_log_likelihood).
    cache_path: .npy of the exact log p(x) [N_test] (float64), written on the
      first call, read afterwards.

  Returns:
    {test_exact_log_likelihood, test_exact_gap, test_exact_iw_gap} or {}.

  Raises:
    ValueError: the cached array does not match the test set's size.
  """
  if splits.exact_log_likelihood is None:
    return {}
  num_test = splits.test.x.shape[0]
  if os.path.exists(cache_path):
    exact = np.load(cache_path)
    if exact.shape != (num_test,):
      raise ValueError(
          f"{cache_path} holds {exact.shape} values for a test set of "
          f"{num_test}; delete it to recompute.")
  else:
    exact = np.asarray(splits.exact_log_likelihood(splits.test.x), np.float64)
    tmp = cache_path + ".tmp.npy"
    np.save(tmp, exact)
    os.replace(tmp, cache_path)
  cached = dataclasses.replace(splits, exact_log_likelihood=lambda x: exact)
  return data.exact_test_metrics(cached, metrics)


def _train_images_as_scored(x: np.ndarray,
                            config: ml_collections.ConfigDict) -> np.ndarray:
  """The training images as the likelihood scores them.

  With dynamic binarization the training split keeps its grey values (the
  input pipeline draws x ~ Bernoulli(grey) every epoch); the train ELBO is
  then taken on one fixed draw (`data.binarization_seed`, stream "train"),
  an unbiased estimate of the ELBO that training maximizes, and comparable
  to the test split's single fixed draw. Every other representation is
  scored as stored.
  """
  if preprocess.resolve(config)[2] != "dynamic":
    return x
  return preprocess.bernoulli_draw(x, config.data.binarization_seed, "train")


def model_diagnostics(model: keras.Model, splits: Any,
                      config: ml_collections.ConfigDict) -> Metrics:
  """What explains a run's numbers (`experiments.diagnostics`).

  Args:
    model: the trained VAE or VIB (best checkpoint).
    splits: its `vib_flows.data.DataSplits`.
    config: its config.

  Returns:
    dict: active_units_z0 / active_units_zk (+ activities) and
    encoder_scale_mean / aggregate_std_z0 / aggregate_std_zk on the test set;
    log_det_max_error / log_det_mean_abs (flows); train_elbo and
    train_log_likelihood (VAE, K = TRAIN_ELBO_SAMPLES; on one fixed
    binarization of the training images when they are binarized
    dynamically) or train_cross_entropy
    / train_kl (VIB) on the training set: the train/test gap (not on the
    synthetic data, whose training set is drawn afresh every epoch).
  """
  result = diagnostics.active_units(model, splits.test.x)
  result.update(diagnostics.aggregate_spread(model, splits.test.x))
  if len(model.flow):
    error, magnitude = diagnostics.log_det_error(model, splits.test.x)
    result.update(log_det_max_error=error, log_det_mean_abs=magnitude)
  if synthetic_data.is_synthetic_name(config.data.name):
    pass  # Fresh training draws each epoch: no train/test gap to measure.
  elif model.models_inputs:
    elbo, log_lik = diagnostics.split_elbo(
        model, _train_images_as_scored(splits.train.x, config),
        TRAIN_ELBO_SAMPLES)
    result.update(train_elbo=elbo, train_log_likelihood=log_lik)
  else:
    terms = evaluate.mean_terms(model, splits.train, config)
    result.update(train_cross_entropy=terms["cross_entropy"],
                  train_kl=terms["kl"])
  return result


def _records_validation_metrics(model_kind: str, data_name: str) -> bool:
  """Whether `validation_metrics` has anything to record for this run.

  A model of x (`models_inputs`, the VAE) on data whose log p(x) is not
  known exactly.
  """
  return (model_builder.model_class(model_kind).models_inputs
          and not synthetic_data.is_synthetic_name(data_name))


def validation_metrics(model: keras.Model, splits: Any,
                       config: ml_collections.ConfigDict) -> Metrics:
  """ELBO and IW log p(x) of a VAE's best model on the validation split.

  Both from the same K = `eval.num_importance_samples` log-weights per image
  (`diagnostics.split_elbo`, seed 0): the ELBO is their mean, the IW bound
  their log-mean-exp (Burda et al. 2016). {} for VIB models and synthetic
  data (whose exact log p(x) is known).

  Returns:
    {validation_elbo, validation_log_likelihood, validation_importance_samples}
    (nats per image, higher is better) or {}.
  """
  if not _records_validation_metrics(str(config.model.kind),
                                     str(config.data.name)):
    return {}
  samples = int(config.eval.num_importance_samples)
  elbo, log_likelihood = diagnostics.split_elbo(
      model, splits.validation.x, samples)
  return {"validation_elbo": elbo,
          "validation_log_likelihood": log_likelihood,
          "validation_importance_samples": samples}


def backfill_diagnostics(directory: str) -> tuple[Metrics, list[str]]:
  """Adds missing `model_diagnostics` / `validation_metrics` to metrics.json.

  Restores the run's best checkpoint (`run_state.restore_run`) when something
  is missing; a complete metrics.json is left untouched.

  Returns:
    (the updated metrics dict, the names of the groups added: "training
    history" (a resumed run's per-epoch validation losses and training
    time, `whole_history`), "model diagnostics", "validation metrics",
    "exact log p(x)"; empty when none was missing).
  """
  path = os.path.join(directory, "metrics.json")
  metrics = aggregate.read_json(path)
  config_json = aggregate.read_json(os.path.join(directory, "config.json"))
  data_name = config_json["data"]["name"]
  synthetic = synthetic_data.is_synthetic_name(data_name)
  missing = []
  if _history_incomplete(metrics):
    metrics.update(whole_history(directory, int(metrics.get("step", 0)),
                                 int(metrics["epochs_run"])))
    missing.append("training history" if metrics["history_complete"]
                   else "training history (unknown: summaries incomplete)")
  if not all(k in metrics for k in DIAGNOSTIC_KEYS):
    missing.append("model diagnostics")
  if (_records_validation_metrics(config_json["model"]["kind"], data_name)
      and not all(k in metrics for k in VALIDATION_KEYS)):
    missing.append("validation metrics")
  if synthetic and not all(k in metrics for k in EXACT_KEYS):
    missing.append("exact log p(x)")
  if missing and missing[0].startswith("training history"):
    workdir_lib.write_json_atomic(path, metrics)
  if not missing or (len(missing) == 1
                     and missing[0].startswith("training history")):
    return metrics, missing
  state = run_state.restore_run(directory)
  if "model diagnostics" in missing:
    metrics.update(model_diagnostics(state.model, state.splits, state.config))
  if "validation metrics" in missing:
    metrics.update(validation_metrics(state.model, state.splits, state.config))
  if "exact log p(x)" in missing:
    metrics.update(exact_metrics(
        state.splits, metrics,
        exact_cache_path(directory, state.config.data.name)))
  workdir_lib.write_json_atomic(path, metrics)
  return metrics, missing


def _history_incomplete(metrics: Metrics) -> bool:
  """A resumed run whose metrics hold only its last process's epochs.

  Runs whose history was read (or found lost) once say so in
  "history_complete" and are not read again.
  """
  return (bool(metrics.get("resumed")) and "history_complete" not in metrics
          and len(metrics.get("validation_loss") or ())
          < metrics.get("epochs_run", 0))


def whole_history(directory: str, final_step: int,
                  epochs_run: int) -> Metrics:
  """A resumed run's validation losses and training time, every process's.

  From its TensorBoard summaries (`run_history.whole`): {"validation_loss":
  per epoch, "train_seconds": the epochs' durations summed,
  "train_seconds_from_summaries": True, "history_complete": True}; when the
  summaries lack epochs, {"validation_loss": None, "train_seconds": None,
  "history_complete": False} (unknown: the tables leave them out).
  """
  history = run_history.whole(directory, final_step, epochs_run)
  if history is None:
    return {"validation_loss": None, "train_seconds": None,
            "history_complete": False}
  return dict(history, train_seconds_from_summaries=True,
              history_complete=True)


def train_model_run(config: ml_collections.ConfigDict,
                    directory: str) -> Metrics:
  """Trains (resuming) and evaluates one VAE / VIB run; writes metrics.json.

  Uses `run_state.build_state`, `epoch_loop.train`,
  `run_state.load_evaluated_weights` and
  `evaluate.test_metrics`, so that training and evaluation are timed apart.

  Returns:
    The metrics dict: the test metrics, step, best_step, steps_this_run,
    best_epoch, epochs_run, train_seconds, eval_seconds, resumed,
    validation_loss (per epoch), `model_diagnostics` and
    `validation_metrics`. A resumed run's validation_loss and
    train_seconds cover every process that trained it (`whole_history`).
  """
  keras.backend.clear_session()
  config_checks.validate(config)  # Before the run directory is touched.
  resumed = workdir_lib.prepare(directory, config)
  state = run_state.build_state(config, directory)
  start_step = state.step
  start = time.perf_counter()
  history = epoch_loop.train(state, verbose=False)
  train_seconds = time.perf_counter() - start
  final_step = state.step
  run_state.load_evaluated_weights(state)
  best_step = state.evaluated_step
  start = time.perf_counter()
  metrics = evaluate.test_metrics(state.model, state.splits, config)
  eval_seconds = time.perf_counter() - start
  if not all(k in metrics for k in EXACT_KEYS):
    metrics.update(exact_metrics(state.splits, metrics,
                                 exact_cache_path(directory, config.data.name)))
  steps_per_epoch = state.splits.train.x.shape[0] // config.train.batch_size
  metrics.update(
      step=final_step, best_step=best_step,
      steps_this_run=final_step - start_step,
      best_epoch=best_step // steps_per_epoch,
      epochs_run=final_step // steps_per_epoch,
      train_seconds=train_seconds, eval_seconds=eval_seconds,
      resumed=bool(resumed and start_step > 0),
      validation_loss=[h["validation_loss"] for h in history],
  )
  if metrics["resumed"]:  # This process ran only the last epochs.
    metrics.update(whole_history(directory, final_step,
                                 metrics["epochs_run"]))
  else:
    metrics["history_complete"] = True
  metrics.update(model_diagnostics(state.model, state.splits, config))
  metrics.update(validation_metrics(state.model, state.splits, config))
  workdir_lib.write_json_atomic(os.path.join(directory, "metrics.json"),
                                metrics)
  return metrics


def reevaluate_importance_samples(directory: str,
                                  config: ml_collections.ConfigDict
                                  ) -> Metrics | None:
  """Re-tests a finished VAE run with the sweep's K importance samples.

  A sweep run again with another `--importance_samples` re-evaluates its
  finished runs (their weights are unchanged): the test ELBO and log p(x)
  with the new K replace the old ones, which stay in metrics.json as
  `test_elbo_k<old K>` and `test_log_likelihood_k<old K>`. Training is not
  repeated and the validation metrics keep the K they were made with.

  How the test set is batched and chunked (eval.batch_size,
  eval.importance_chunk_size) is the sweep's, not the run's: the estimates
  do not depend on it (`VAE.log_likelihood`), its cost does
  (`experiments.research.eval_batch_size`).

  Returns:
    The updated metrics, or None when the run already has this K (or is not
    a VAE).
  """
  path = os.path.join(directory, "metrics.json")
  metrics = aggregate.read_json(path)
  k = int(config.eval.num_importance_samples)
  old = metrics.get("num_importance_samples")
  models_inputs = model_builder.model_class(config.model.kind).models_inputs
  if not models_inputs or old is None or int(old) == k:
    return None
  state = run_state.restore_run(directory)
  state.config.eval.num_importance_samples = k
  for field in ("batch_size", "importance_chunk_size"):
    state.config.eval[field] = config.eval[field]
  start = time.perf_counter()
  new = evaluate.test_metrics(state.model, state.splits, state.config)
  for key in ("test_elbo", "test_log_likelihood"):
    metrics[f"{key}_k{int(old)}"] = metrics[key]
    metrics[key] = new[key]
  metrics["num_importance_samples"] = k
  metrics["eval_seconds"] = time.perf_counter() - start
  workdir_lib.write_json_atomic(path, metrics)
  return metrics


def run_one(entry: grids.Entry, config: ml_collections.ConfigDict,
            directory: str) -> tuple[Metrics, str]:
  """Runs one configuration and seed (skipped if metrics.json exists).

  A run finished before some metrics existed gets them added from its best
  checkpoint (`backfill_diagnostics`; a resumed run its whole history, from
  its summaries; a resumed deterministic baseline is marked when its history
  is lost, `baseline.backfill_history`), every classifier run the FGSM
  and PGD accuracies of `eval.fgsm_epsilons` / `eval.pgd_epsilons` it lacks
  (`attack.backfill`), and a VAE
  run tested with another K than the sweep's is re-tested with it
  (`reevaluate_importance_samples`).

  Returns:
    (metrics dict, what was done: "trained", "finished before; filled in
    <groups>" or "skipped (metrics.json exists)").
  """
  path = os.path.join(directory, "metrics.json")
  deterministic = entry["name"] == grids.DETERMINISTIC
  added = []
  if os.path.exists(path):
    if not deterministic:
      _, added = backfill_diagnostics(directory)
      if reevaluate_importance_samples(directory, config) is not None:
        added.append(f"test metrics with K = "
                     f"{config.eval.num_importance_samples}")
    elif baseline.backfill_history(directory):
      added.append("training history (unknown: resumed before it was kept)")
    done = SKIPPED
  elif deterministic:
    baseline.train_deterministic_run(config, directory)
    done = TRAINED
  else:
    train_model_run(config, directory)
    done = TRAINED
  # Robustness (eval.*_epsilons): also for runs finished before it was set.
  metrics, attacked = attack.backfill(directory, config, deterministic)
  if attacked and done == SKIPPED:
    added.append(" and ".join(attacked) + " accuracy")
  if added:
    return metrics, f"finished before; filled in {', '.join(added)}"
  return metrics, done


def run_sweep(sweep: str, workdir: str, seeds: int = 3, epochs: int = 0,
              importance_samples: int = 0, first_seed: int = 0,
              only: Sequence[str] | None = None,
              base_config: ml_collections.ConfigDict | None = None,
              command: str | None = None,
              log: Callable[[str], Any] = print,
              settings: dict[str, Any] | None = None) -> dict[str, Any]:
  """Runs (or resumes) a sweep and writes results.json / results.md.

  Args:
    sweep: a name of `grids.GRIDS`.
    workdir: the sweep directory.
    seeds: the number of seeds per configuration.
    epochs: train.num_epochs override (0: the base config's).
    importance_samples: eval.num_importance_samples override (0: config's).
    first_seed: seeds first_seed .. first_seed + seeds - 1 run.
    only: names of the configurations to run (None: all).
    base_config: config to use instead of configs/<base>.py (tests).
    command: the command line recorded in the results.
    log: function printing one progress line.
    settings: {"section.field": value} set in every run (`--set`).

  Returns:
    The results dict (also DIR/results.json).
  """
  entries = grids.grid(sweep, only)
  os.makedirs(workdir, exist_ok=True)
  for seed in range(first_seed, first_seed + seeds):
    for entry in entries:
      config = grids.make_config(entry, seed, epochs, importance_samples,
                                 base_config, settings)
      directory = grids.run_dir(workdir, entry["name"], seed)
      start = time.perf_counter()
      metrics, done = run_one(entry, config, directory)
      log(f"[{sweep}] {entry['name']} seed {seed}: {done} in "
          f"{time.perf_counter() - start:.1f} s; {_headline(metrics)}")
  return aggregate.write_results(sweep, workdir, seeds, epochs,
                                 importance_samples, only, base_config,
                                 command, first_seed, settings)


def _headline(metrics: Metrics) -> str:
  return " ".join(f"{k}={metrics[k]:.4g}" for k in _HEADLINE_KEYS
                  if isinstance(metrics.get(k), (int, float)))
