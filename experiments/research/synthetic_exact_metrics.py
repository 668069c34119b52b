"""Exact-likelihood metrics of a finished run on synthetic data.

Reads DIR/config.json and DIR/metrics.json of a run of `python -m
vib_flows.main` on a "synthetic:*" data set and prints (and, with --write,
adds to DIR/metrics.json) the metrics of `vib_flows.data.exact_test_metrics`:
test_exact_log_likelihood (the exact mean log p(x) of the test set),
test_exact_gap (that minus test_elbo) and test_exact_iw_gap (that minus the
importance-weighted test_log_likelihood).

  python -m experiments.research.synthetic_exact_metrics --run_dir=DIR [--write]
"""

import json
import os

from absl import app
from absl import flags
import ml_collections

from vib_flows import data
from vib_flows.app import workdir as workdir_lib

_RUN_DIR = flags.DEFINE_string("run_dir", None, "Finished run directory.")
_WRITE = flags.DEFINE_bool("write", False, "Add the metrics to metrics.json.")


def exact_metrics(run_dir):
  """The run's metrics.json with the exact-likelihood metrics added."""
  with open(os.path.join(run_dir, "config.json")) as f:
    config = ml_collections.ConfigDict(json.load(f))
  with open(os.path.join(run_dir, "metrics.json")) as f:
    metrics = json.load(f)
  extra = data.exact_test_metrics(data.load(config), metrics)
  if not extra:
    raise ValueError(f"{config.data.name!r} has no known exact likelihood.")
  return dict(metrics, **extra)


def main(argv):
  del argv
  metrics = exact_metrics(_RUN_DIR.value)
  if _WRITE.value:
    workdir_lib.write_json_atomic(
        os.path.join(_RUN_DIR.value, "metrics.json"), metrics)
  print(json.dumps(metrics, indent=2, sort_keys=True))


if __name__ == "__main__":
  flags.mark_flag_as_required("run_dir")
  app.run(main)
