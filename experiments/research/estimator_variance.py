"""Pathwise against score-function gradients.

Variance at fixed parameters, and training curves.

The two estimators of `loss.estimator` (vib_flows/objectives.py) are unbiased
for the gradient of the same loss L = E_q[-log p(x|zK)] + beta KL; they differ
in variance, which decides how fast training goes.

1. Variance. At fixed parameters and a fixed minibatch (the first
   `train.batch_size` training examples, the model's beta), N draws of the
   gradient of the model's own surrogate (`per_example_loss`) per estimator:
     pathwise          z0 = mu + sigma eps, differentiated through;
     sf, b = 0         score function without a baseline;
     sf, b = mean cost score function with the baseline set to the mean cost
                       at these parameters (what the moving average
                       `loss.baseline_decay` tracks in training).
   Per parameter group (encoder, flow, decoder, prior): tr Cov(g), ||E g|| and
   the signal-to-noise ratio ||E g|| / sqrt(tr Cov(g)), where ||E g|| is the
   pathwise estimate (all three share the expectation). The draws run in
   chunks, each one `tf.vectorized_map` over seeds inside one tf.function;
   experiments/research/gradient_moments.py merges them. Two parameter
   points: at initialization and after `--epochs` epochs of pathwise training
   (the seed-0 pathwise run of part 2).
2. Training curves. For each estimator and seed, the real trainer
   (`run_state.build_state` + `epoch_loop.train` into a temporary workdir):
   validation ELBO (= -validation_loss, beta = 1) per epoch, against steps and
   against training seconds (summed per-epoch time of the train steps, compile
   included, validation excluded).

Writes OUT/results.json and OUT/curves.png (and OUT/log.txt if redirected).

  python -m experiments.research.estimator_variance --out=/work/estimators_out

(`--configs`, `--epochs`, `--seeds`, `--draws`, `--chunk` change the study;
docs/estimators.md gives the commands of its numbers.)
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

import experiments
from experiments import host
from experiments.research import gradient_moments
from vib_flows.app import config_files
from vib_flows.app import epoch_loop
from vib_flows.app import model_builder
from vib_flows.app import run_state

ESTIMATORS = ("pathwise", "score_function")
VARIANTS = ("pathwise", "sf_no_baseline", "sf_mean_baseline")
BASELINE_SEEDS = 200  # Draws averaged for the baseline (the mean cost).


def parameter_groups(model) -> dict:
  """{group: [variables]} over the trainable variables (empty groups dropped).

  Groups: "encoder", "flow", "decoder" (the generator), "prior".
  """
  owners = {"encoder": model.encoder, "flow": model.flow,
            "decoder": model.generator, "prior": model.prior}
  groups = {name: list(layer.trainable_variables)
            for name, layer in owners.items()}
  grouped = {id(v) for vs in groups.values() for v in vs}
  stray = [v.path for v in model.trainable_variables if id(v) not in grouped]
  if stray:
    raise ValueError(f"Trainable variables outside every group: {stray}")
  return {name: vs for name, vs in groups.items() if vs}


def _flat_group_gradients(model, groups, batch, beta, seed):
  """{group: [P_g]} gradient of mean_b surrogate_b for one seed [2]."""
  variables = [v for vs in groups.values() for v in vs]
  with tf.GradientTape() as tape:
    surrogate, _ = model.per_example_loss(batch, beta, seed)
    loss = tf.reduce_mean(surrogate)
  grads = tape.gradient(loss, variables)
  flat = [tf.reshape(tf.zeros_like(v) if g is None else g, [-1])
          for g, v in zip(grads, variables)]
  out, i = {}, 0
  for name, vs in groups.items():
    out[name] = tf.concat(flat[i:i + len(vs)], axis=0)
    i += len(vs)
  return out


def make_chunk_moments(model, batch, beta):
  """A tf.function seeds [c, 2] -> {group: (mean [P_g], m2 [P_g])} float64.

  The c gradient draws are one `tf.vectorized_map` (while-loop fallback for
  ops without a vectorized rule).
  """
  groups = parameter_groups(model)

  @tf.function
  def chunk_moments(seeds):
    draws = tf.vectorized_map(
        lambda seed: _flat_group_gradients(model, groups, batch, beta, seed),
        seeds, fallback_to_while_loop=True)
    out = {}
    for name, g in draws.items():
      g = tf.cast(g, tf.float64)
      mean = tf.reduce_mean(g, axis=0)
      out[name] = (mean, tf.reduce_sum(tf.square(g - mean), axis=0))
    return out

  return chunk_moments


def mean_cost(model, batch, beta) -> float:
  """The mean score-function cost at these parameters (batch and draws).

  cost_s = -log p(x|zK_s) + beta * KL_s (the sampled KL; with the KL in closed
  form it is not part of the cost), i.e. what `_surrogate`'s moving-average
  baseline converges to at fixed parameters.
  """

  @tf.function
  def costs(seeds):
    def one(seed):
      _, terms = model.per_example_loss(batch, beta, seed)
      cost = -terms["reconstruction"]
      if not model.closed_form_kl:
        cost += beta * terms["kl"]
      return tf.reduce_mean(cost)
    return tf.map_fn(one, seeds, fn_output_signature=tf.float32)

  seeds = tf.stack([tf.fill([BASELINE_SEEDS], 7),
                    tf.range(BASELINE_SEEDS)], axis=1)
  return float(tf.reduce_mean(costs(seeds)))


def variance_at(model, info, config, batch, draws, chunk) -> dict:
  """Tr Cov, ||E g|| and SNR per group for the three estimator variants."""
  beta = tf.constant(float(model.beta), tf.float32)
  score_config = config.copy_and_resolve_references()
  score_config.loss.estimator = "score_function"
  score_model = model_builder.build_model(score_config, info)
  score_model.set_weights(model.get_weights())
  baseline = mean_cost(model, batch, beta)
  runs = {"pathwise": (model, 0.0), "sf_no_baseline": (score_model, 0.0),
          "sf_mean_baseline": (score_model, baseline)}
  result = {"baseline": baseline, "beta": float(model.beta),
            "batch_size": int(batch["x"].shape[0])}
  for variant, (m, b) in runs.items():
    m.baseline.assign(b)
    fn = make_chunk_moments(m, batch, beta)
    moments = {}
    start = time.perf_counter()
    for k in range(draws // chunk):
      seeds = tf.stack([tf.fill([chunk], 1000 + k), tf.range(chunk)], axis=1)
      for name, (mean, m2) in fn(seeds).items():
        moments.setdefault(name, gradient_moments.Moments()).add_chunk(
            chunk, mean.numpy(), m2.numpy())
    result[variant] = {name: mo.summary() for name, mo in moments.items()}
    result[variant]["seconds"] = time.perf_counter() - start
    print(f"  ({result[variant]['seconds']:.1f} s)", flush=True)
    print(f"  {variant}: " + ", ".join(
        f"{n} tr={s['trace']:.4g}" for n, s in result[variant].items()
        if n != "seconds"), flush=True)
  for variant in VARIANTS:
    for name, stats in result[variant].items():
      if name == "seconds":
        continue
      signal = result["pathwise"][name]["mean_norm"]
      stats["snr"] = signal / np.sqrt(stats["trace"]) if stats["trace"] else (
          float("inf"))
  return result


def _study_config(config_name, estimator, seed, epochs):
  config = config_files.load(experiments.config_path(config_name))
  config.seed = seed
  config.loss.estimator = estimator
  config.train.num_epochs = epochs
  config.train.early_stopping_patience = 0  # Same length for every run.
  config.train.checkpoint_every_epochs = 0
  config.train.image_summaries_every_epochs = 0
  return config


def run_config(config_name, epochs, seeds, draws, chunk, scratch) -> dict:
  """Training curves for every estimator and seed, variance on seed 0."""
  out = {"curves": {}, "variance": {}}
  for seed in seeds:  # Estimators interleaved: both see the same load.
    for estimator in ESTIMATORS:
      config = _study_config(config_name, estimator, seed, epochs)
      workdir = tempfile.mkdtemp(dir=scratch,
                                 prefix=f"{config_name}_{estimator}_{seed}_")
      state = run_state.build_state(config, workdir)
      measure = estimator == "pathwise" and seed == seeds[0]
      if measure:
        batch = {"x": tf.constant(
            state.splits.train.x[:config.train.batch_size])}
        print(f"{config_name}: variance at initialization", flush=True)
        out["variance"]["init"] = variance_at(
            state.model, state.splits.info, config, batch, draws, chunk)
      start = time.perf_counter()
      history = epoch_loop.train(state, verbose=False)
      wall = time.perf_counter() - start
      steps = np.diff([0] + [h["step"] for h in history])
      seconds = np.cumsum(steps * config.train.batch_size
                          / np.array([h["examples_per_second"]
                                      for h in history]))
      out["curves"][f"{estimator}/{seed}"] = {
          "step": [h["step"] for h in history],
          "train_seconds": seconds.tolist(),
          "validation_elbo": [-h["validation_loss"] for h in history],
          "wall_seconds": wall}
      print(f"{config_name} {estimator} seed {seed}: {history[-1]['step']} "
            f"steps, {wall:.0f} s, validation ELBO "
            f"{-history[-1]['validation_loss']:.3f}", flush=True)
      if measure:
        print(f"{config_name}: variance after {history[-1]['step']} steps",
              flush=True)
        out["variance"]["trained"] = variance_at(
            state.model, state.splits.info, config, batch, draws, chunk)
        out["variance"]["trained"]["step"] = history[-1]["step"]
  return out


def steady_seconds(run) -> np.ndarray:
  """Cumulative training seconds [E] with epoch 1 counted at the median epoch.

  Epoch 1 holds the tracing and XLA compilation (tens of seconds here, set by
  the machine's load more than by the estimator); the other epochs' median
  stands in for it, so the axis compares the estimators' cost per step.
  """
  per_epoch = np.diff(np.concatenate([[0.0], run["train_seconds"]]))
  if per_epoch.size > 1:
    per_epoch[0] = np.median(per_epoch[1:]) * (
        run["step"][0] / np.median(np.diff(run["step"])))
  return np.cumsum(per_epoch)


def plot_curves(results, path) -> None:
  """Validation ELBO vs steps and vs seconds, mean and min-max over seeds."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  names = list(results["configs"])
  fig, axes = plt.subplots(len(names), 2, figsize=(10, 3.6 * len(names)),
                           squeeze=False)
  colors = {"pathwise": "tab:blue", "score_function": "tab:red"}
  for row, name in zip(axes, names):
    curves = results["configs"][name]["curves"]
    for estimator in ESTIMATORS:
      runs = [v for k, v in curves.items() if k.startswith(estimator + "/")]
      elbo = np.array([r["validation_elbo"] for r in runs])
      xs = (np.array([r["step"] for r in runs]),
            np.array([steady_seconds(r) for r in runs]))
      for ax, x in zip(row, xs):
        ax.plot(x.mean(0), elbo.mean(0), color=colors[estimator],
                label=f"{estimator} (mean of {len(runs)} seeds)")
        ax.fill_between(x.mean(0), elbo.min(0), elbo.max(0),
                        color=colors[estimator], alpha=0.25, lw=0)
    low = min(np.percentile(v["validation_elbo"], 5)
              for v in curves.values())
    high = max(max(v["validation_elbo"]) for v in curves.values())
    for ax, label in zip(row, ("training steps",
                               "training seconds (compile excluded)")):
      ax.set_xlabel(label)
      ax.set_ylabel("validation ELBO (nats)")
      ax.set_title(f"configs/{name}.py")
      ax.grid(alpha=0.3)
    exact = results["configs"][name].get("exact_validation_log_likelihood")
    if exact is not None:
      for ax in row:
        ax.axhline(exact, color="k", ls="--", lw=1,
                   label="exact log p(x) (quadrature)")
      high = max(high, exact)
    row[0].legend(loc="lower right")
    for ax in row:
      ax.set_ylim(low, high + 0.05 * (high - low))
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--configs", default="vae_digits,vae_synthetic_true")
  parser.add_argument("--epochs", default="30,10",
                      help="Epochs per config, in --configs order.")
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--draws", type=int, default=1000)
  parser.add_argument("--chunk", type=int, default=100)
  args = parser.parse_args(argv)
  names = args.configs.split(",")
  epochs = [int(e) for e in args.epochs.split(",")]
  if len(epochs) != len(names):
    raise ValueError(f"--epochs has {len(epochs)} entries for {len(names)} "
                     "configs.")
  if args.draws % args.chunk or args.draws // args.chunk < 2:
    raise ValueError(f"--draws={args.draws} must be a multiple (>= 2x) of "
                     f"--chunk={args.chunk}.")
  os.makedirs(args.out, exist_ok=True)
  results = {"machine": host.summary(host.describe()),
             "load_average_start": list(os.getloadavg()),
             "command": " ".join(["python"] + sys.argv), "configs": {}}
  scratch = tempfile.mkdtemp(prefix="estimators_")
  start = time.perf_counter()
  for name, e in zip(names, epochs):
    results["configs"][name] = run_config(name, e, args.seeds, args.draws,
                                           args.chunk, scratch)
    with open(os.path.join(args.out, "results.json"), "w") as f:
      json.dump(results, f, indent=1)
  shutil.rmtree(scratch, ignore_errors=True)
  results["total_seconds"] = time.perf_counter() - start
  results["load_average_end"] = list(os.getloadavg())
  with open(os.path.join(args.out, "results.json"), "w") as f:
    json.dump(results, f, indent=1)
  plot_curves(results, os.path.join(args.out, "curves.png"))
  print(f"done in {results['total_seconds']:.0f} s", flush=True)


if __name__ == "__main__":
  main()
