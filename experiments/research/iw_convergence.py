"""How the importance-weighted bound of trained sweep models moves with K.

For each run DIR/<config>/seed<k> of a finished `experiments.sweep` VAE sweep,
restores the best checkpoint and estimates, on the test set, the ELBO and the
importance-weighted bound (Burda et al. 2016)

    log p(x) >= E[ log (1/K) sum_k p(x, z_k) / q(z_k|x) ],   z_k ~ q(z|x),

for each K in --samples. The bound tightens as K grows, faster the closer q is
to the true posterior; if two models' -log p(x) differ at K = 5000 but the
difference shrinks with K, the difference is the estimator's, not the
models'. Prints one line per run and K, and the mean over seeds.

    python -m experiments.research.iw_convergence --workdir=results/vae \
        --configs=none,iaf4_amortized --samples=1000,5000,20000
"""

import os

from absl import app
from absl import flags
import numpy as np

_WORKDIR = flags.DEFINE_string("workdir", None, "A finished VAE sweep.",
                               required=True)
_CONFIGS = flags.DEFINE_list("configs", ["none"], "Configurations to check.")
_SAMPLES = flags.DEFINE_list("samples", ["1000", "5000", "20000"],
                             "Numbers of importance samples K.")
_SEED = flags.DEFINE_integer("seed", 1, "Seed of the importance samples.")


def bounds(directory, samples, seed):
  """{K: (-ELBO, -IW bound)} on the test set for one run directory."""
  from experiments import diagnostics  # pylint: disable=g-import-not-at-top
  from vib_flows.app import run_state  # pylint: disable=g-import-not-at-top
  state = run_state.restore_run(directory)
  result = {}
  for k in samples:
    elbo, iw = diagnostics.split_elbo(state.model, state.splits.test.x, k,
                                      seed=seed, batch_size=150)
    result[k] = (-elbo, -iw)
  return result


def main(argv):
  del argv
  samples = [int(k) for k in _SAMPLES.value]
  for name in _CONFIGS.value:
    seeds = sorted(d for d in os.listdir(os.path.join(_WORKDIR.value, name))
                   if d.startswith("seed"))
    per_seed = []
    for seed_dir in seeds:
      result = bounds(os.path.join(_WORKDIR.value, name, seed_dir), samples,
                      _SEED.value)
      per_seed.append(result)
      for k in samples:
        print(f"{name} {seed_dir} K={k}: -ELBO {result[k][0]:.3f} "
              f"-log p(x) {result[k][1]:.3f}", flush=True)
    for k in samples:
      iw = np.array([r[k][1] for r in per_seed])
      print(f"{name} mean over {len(seeds)} seeds, K={k}: -log p(x) "
            f"{iw.mean():.3f}", flush=True)


if __name__ == "__main__":
  app.run(main)
