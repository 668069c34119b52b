"""Draws true posteriors p(z|x) of the synthetic data sets.

The figure is docs/synthetic_posteriors.png.

One row per variant ("banana", "bimodal", "ring"), one column per test
example (the first examples of the fixed test set): the density p(z|x) on a
grid (`vib_flows.quadrature.log_posterior`), exact up to the grid. With
--run_dir, a finished run on one of the variants (e.g. of
configs/vae_synthetic_true.py) adds its encoder's Gaussian q0(z|x) as 1- and
2-standard-deviation ellipses in that variant's row, and the title gives each
example's exact log p(x) - ELBO.

  python -m experiments.research.synthetic_posteriors \
      --output=docs/synthetic_posteriors.png [--run_dir=/tmp/synthetic_true]
"""

import os

from absl import app
from absl import flags
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

from vib_flows import quadrature
from vib_flows.data import synthetic

_OUTPUT = flags.DEFINE_string("output", "docs/synthetic_posteriors.png",
                              "PNG to write.")
_RUN_DIR = flags.DEFINE_string(
    "run_dir", "", "Optional finished run whose Gaussian q0(z|x) is overlaid.")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", 5, "Columns.")

BOUND = 3.5  # The pictures show [-BOUND, BOUND]^2.
NUM_POINTS = 200
ELBO_SAMPLES = 5000


def test_examples(variant, num_examples):
  """The first examples of the variant's fixed test set, [n, 64]."""
  raw = synthetic.load_raw(synthetic.PREFIX + variant)
  return raw.test.x[:num_examples]


def gaussian_posteriors(run_dir, x):
  """The Gaussian posteriors q0(z|x) of a finished run's encoder.

  Returns:
    (variant, loc [n, 2], scale [n, 2], elbo [n]).
  """
  from vib_flows.app import run_state  # pylint: disable=g-import-not-at-top
  state = run_state.restore_run(run_dir)
  variant = synthetic.variant_of(state.config.data.name)
  x = tf.constant(x[variant])
  loc, scale, _ = state.model._encode_params(x)  # pylint: disable=protected-access
  elbo, _ = state.model.log_likelihood(x, ELBO_SAMPLES, tf.constant([1, 2]))
  return variant, loc.numpy(), scale.numpy(), elbo.numpy()


def draw(x, overlay, path):
  """Writes the grid of posterior pictures to `path`."""
  variants = list(x)
  columns = next(iter(x.values())).shape[0]
  fig, axes = plt.subplots(len(variants), columns,
                           figsize=(2.2 * columns, 2.35 * len(variants)),
                           squeeze=False)
  for row, variant in enumerate(variants):
    log_lik = synthetic.bernoulli_log_likelihood(variant)
    axis, log_density = quadrature.log_posterior(log_lik, x[variant],
                                                 NUM_POINTS, BOUND)
    exact = synthetic.exact_log_likelihood(synthetic.PREFIX + variant,
                                           x[variant])
    for col in range(columns):
      ax = axes[row, col]
      ax.imshow(np.exp(log_density[col]).T, origin="lower", cmap="viridis",
                extent=(-BOUND, BOUND, -BOUND, BOUND))
      title = f"log p(x) = {exact[col]:.2f}"
      if overlay and overlay[0] == variant:
        _, loc, scale, elbo = overlay
        t = np.linspace(0, 2 * np.pi, 100)
        for k in (1, 2):
          ax.plot(loc[col, 0] + k * scale[col, 0] * np.cos(t),
                  loc[col, 1] + k * scale[col, 1] * np.sin(t), "w--", lw=0.8)
        title += f"\ngap {exact[col] - elbo[col]:.2f}"
      ax.set_title(title, fontsize=8)
      ax.set_xticks([])
      ax.set_yticks([])
      if col == 0:
        ax.set_ylabel(f"synthetic:{variant}\nz2", fontsize=9)
      if row == len(variants) - 1:
        ax.set_xlabel("z1", fontsize=9)
  fig.suptitle("True posteriors p(z|x) of test examples, z in [-3.5, 3.5]^2"
               + ("; dashed: a trained Gaussian q(z|x), 1 and 2 sd"
                  if overlay else ""), fontsize=10)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=90)
  plt.close(fig)


def main(argv):
  del argv
  x = {v: test_examples(v, _NUM_EXAMPLES.value) for v in synthetic.VARIANTS}
  overlay = gaussian_posteriors(_RUN_DIR.value, x) if _RUN_DIR.value else None
  draw(x, overlay, _OUTPUT.value)
  print(f"Wrote {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
