"""One SGD step with gradient clipping, under "default" and "mirrored".

With learning rate 1 and clipnorm c far below the gradient's norm, the
update is -clip(g, c), whose global norm (over all variables) is exactly c.
Prints a JSON dict {strategy: {"replicas", "update_norm", "largest_norm"}} on
the last line, "largest_norm" being the largest single variable's update.
Run in its own process: the logical CPUs must exist before TensorFlow starts.
"""

import json
import sys
import tempfile

sys.path.insert(0, sys.argv[1])  # The repository root.
CLIPNORM = float(sys.argv[2])

from tests import helpers  # pylint: disable=g-import-not-at-top  # noqa: E402

helpers.two_cpu_config("default")  # Creates the logical CPUs first.

import numpy as np  # pylint: disable=g-import-not-at-top  # noqa: E402

from vib_flows.app import batch_sources  # pylint: disable=g-import-not-at-top  # noqa: E402
from vib_flows.app import distribute  # pylint: disable=g-import-not-at-top  # noqa: E402
from vib_flows.app import distributed_steps  # pylint: disable=g-import-not-at-top  # noqa: E402
from vib_flows.app import run_state  # pylint: disable=g-import-not-at-top  # noqa: E402

result = {}
for strategy_name in ("default", "mirrored"):
  config = helpers.two_cpu_config(strategy_name)
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 1.0
  config.optimizer.clipnorm = CLIPNORM
  strategy = distribute.make_strategy(config.runtime)
  with tempfile.TemporaryDirectory() as workdir:
    state = run_state.build_state(config, workdir, strategy)
    before = [v.numpy() for v in state.model.trainable_variables]
    step = distributed_steps.make_train_step(state)
    step(next(iter(batch_sources.epoch_dataset(state, 0))))  # pylint: disable=protected-access
    deltas = [v.numpy() - b
              for v, b in zip(state.model.trainable_variables, before)]
  norms = [float(np.linalg.norm(d)) for d in deltas]
  result[strategy_name] = {
      "replicas": strategy.num_replicas_in_sync,
      "update_norm": float(np.sqrt(np.sum(np.square(norms)))),
      "largest_norm": max(norms),
  }
print(json.dumps(result))
