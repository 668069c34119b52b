"""True posteriors beside a Gaussian's and a flow's (docs/synthetic_flows.png).

Reads a finished `synthetic_true` (or `synthetic_learned`) sweep directory of
`python -m experiments.sweep` and draws, for the first test examples of its data
set, one row each:

  p(z|x)          the true posterior on a grid (`vib_flows.quadrature`);
  Gaussian q(z|x) the no-flow run's encoder density, exact on the grid;
  flow q0(z0|x)   the flow run's base Gaussian, exact on the grid;
  flow qK(zK|x)   a 2-D histogram of NUM_SAMPLES flow samples zK per example
                  (samples work for every flow, invertible or not).

Each panel's title gives that example's gap log p(x) - ELBO (ELBO_SAMPLES
samples). The flow is the one with the best validation loss (the lowest
mean over seeds of the best epoch's validation -ELBO; test numbers play no
part), unless --flow names a configuration. Seed 0 runs are drawn.

  python -m experiments.research.synthetic_flow_posteriors \
      --sweep_dir=/work/sweeps/synthetic/true --output=docs/synthetic_flows.png
"""

import json
import os

from absl import app
from absl import flags
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

from vib_flows import quadrature
from vib_flows.app import run_state
from vib_flows.data import synthetic

_SWEEP_DIR = flags.DEFINE_string("sweep_dir", None, "Finished sweep directory.")
_OUTPUT = flags.DEFINE_string("output", "docs/synthetic_flows.png",
                              "PNG to write.")
_FLOW = flags.DEFINE_string(
    "flow", "", "Flow configuration to draw (default: best by validation).")
_EXAMPLES = flags.DEFINE_list("examples", ["0", "1", "2"],
                              "Indices of the test examples (rows).")

BOUND = 3.5  # The pictures show [-BOUND, BOUND]^2.
NUM_POINTS = 160  # Grid points per axis (and histogram bins).
NUM_SAMPLES = 50_000  # Flow samples per example for the qK histogram.
ELBO_SAMPLES = 5000
GAUSSIAN = "none"


def best_by_validation(sweep_dir: str) -> str:
  """The flow configuration with the lowest mean best validation loss.

  Args:
    sweep_dir: a sweep directory with results.json.

  Returns:
    The configuration name (never the no-flow one).

  Raises:
    ValueError: no finished flow run holds a validation loss.
  """
  with open(os.path.join(sweep_dir, "results.json")) as f:
    results = json.load(f)
  scores = {}
  for config in results["configs"]:
    losses = [min(run["validation_loss"]) for run in config["runs"].values()
              if run.get("validation_loss")]
    if config["name"] != GAUSSIAN and losses:
      scores[config["name"]] = float(np.mean(losses))
  if not scores:
    raise ValueError(f"No finished flow run with a validation loss in "
                     f"{sweep_dir}.")
  return min(scores, key=scores.get)


def gaussian_log_density(loc: np.ndarray, scale: np.ndarray,
                         axis: np.ndarray) -> np.ndarray:
  """Log N(z; loc, diag(scale^2)) on the grid axis x axis.

  Args:
    loc: [B, 2] means.
    scale: [B, 2] standard deviations.
    axis: [G] grid coordinates.

  Returns:
    [B, G, G], indexed [b, i, j] at z = (axis[i], axis[j]).
  """
  def one_dim(k):
    u = (axis[None, :] - loc[:, k:k + 1]) / scale[:, k:k + 1]
    return -0.5 * u**2 - np.log(scale[:, k:k + 1]) - 0.5 * np.log(2 * np.pi)
  return one_dim(0)[:, :, None] + one_dim(1)[:, None, :]


def posterior_pictures(run_dir: str, x: np.ndarray, axis: np.ndarray) -> dict:
  """What one run's posterior looks like on the test examples x [B, D].

  Returns:
    {"q0": log q0 on the grid [B, G, G], "zk": flow samples
    [NUM_SAMPLES, B, 2], "elbo": per-example ELBO [B], "label": the run's
    configuration name}.
  """
  state = run_state.restore_run(run_dir)
  model = state.model
  x = tf.constant(x, tf.float32)
  loc, scale, context = model._encode_params(x)  # pylint: disable=protected-access
  samples = model._latent_samples(  # pylint: disable=protected-access
      loc, scale, context, NUM_SAMPLES, tf.constant([7, 11]))
  zk = tf.reshape(samples["zk"], [NUM_SAMPLES, x.shape[0], 2]).numpy()
  elbo, _ = model.log_likelihood(x, ELBO_SAMPLES, tf.constant([1, 2]))
  return {"q0": gaussian_log_density(loc.numpy(), scale.numpy(), axis),
          "zk": zk, "elbo": elbo.numpy(),
          "label": os.path.basename(os.path.dirname(run_dir))}


def draw(x, variant, gaussian, flow, path):
  """Writes the rows x columns figure to `path`."""
  log_lik = synthetic.bernoulli_log_likelihood(variant)
  axis, log_true = quadrature.log_posterior(log_lik, x, NUM_POINTS, BOUND)
  axis = np.asarray(axis)
  exact = synthetic.exact_log_likelihood(synthetic.PREFIX + variant, x)
  edges = np.linspace(-BOUND, BOUND, NUM_POINTS + 1)
  extent = (-BOUND, BOUND, -BOUND, BOUND)
  columns = ("true p(z|x)", "Gaussian q(z|x) (no flow)",
             f"{flow['label']}: q0(z0|x)", f"{flow['label']}: qK(zK|x)")
  fig, axes = plt.subplots(x.shape[0], 4, figsize=(10.5, 2.6 * x.shape[0]),
                           squeeze=False)
  for row in range(x.shape[0]):
    hist, _, _ = np.histogram2d(flow["zk"][:, row, 0], flow["zk"][:, row, 1],
                                bins=[edges, edges])
    pictures = (np.exp(log_true[row]), np.exp(gaussian["q0"][row]),
                np.exp(flow["q0"][row]), hist)
    titles = (f"log p(x) = {exact[row]:.2f}",
              f"gap {exact[row] - gaussian['elbo'][row]:.3f}",
              "(base of the flow)",
              f"gap {exact[row] - flow['elbo'][row]:.3f}")
    for col in range(4):
      ax = axes[row, col]
      ax.imshow(pictures[col].T, origin="lower", cmap="viridis",
                extent=extent)
      ax.set_title((columns[col] + "\n" if row == 0 else "") + titles[col],
                   fontsize=8)
      ax.set_xticks([])
      ax.set_yticks([])
    axes[row, 0].set_ylabel(f"test example {row}\nz2", fontsize=8)
  for col in range(4):
    axes[-1, col].set_xlabel("z1", fontsize=8)
  fig.suptitle(f"synthetic:{variant}, z in [-{BOUND}, {BOUND}]^2; gap = exact "
               "log p(x) - ELBO of the example (nats)", fontsize=9)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=90)
  plt.close(fig)


def main(argv):
  del argv
  sweep_dir = _SWEEP_DIR.value
  flow_name = _FLOW.value or best_by_validation(sweep_dir)
  with open(os.path.join(sweep_dir, GAUSSIAN, "seed0", "config.json")) as f:
    variant = synthetic.variant_of(json.load(f)["data"]["name"])
  raw = synthetic.load_raw(synthetic.PREFIX + variant)
  x = raw.test.x[[int(i) for i in _EXAMPLES.value]]
  axis = np.asarray(quadrature.grid(NUM_POINTS, BOUND)[0])
  gaussian = posterior_pictures(os.path.join(sweep_dir, GAUSSIAN, "seed0"), x,
                                axis)
  flow = posterior_pictures(os.path.join(sweep_dir, flow_name, "seed0"), x,
                            axis)
  draw(x, variant, gaussian, flow, _OUTPUT.value)
  print(f"Wrote {_OUTPUT.value} (flow: {flow_name})")


if __name__ == "__main__":
  flags.mark_flag_as_required("sweep_dir")
  app.run(main)
