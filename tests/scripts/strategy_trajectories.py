"""Trains the tiny config under "default" and "mirrored" (2 logical CPUs).

Prints a JSON dict {strategy: [per-epoch train loss, ...]} on the last line.
Run in its own process: the logical CPUs must exist before TensorFlow starts.
"""

import json
import sys
import tempfile

sys.path.insert(0, sys.argv[1])  # The repository root.

from tests import helpers  # pylint: disable=g-import-not-at-top

helpers.two_cpu_config("default")  # Creates the logical CPUs first.

from vib_flows.app import distribute  # pylint: disable=g-import-not-at-top  # noqa: E402
from vib_flows.app import epoch_loop  # pylint: disable=g-import-not-at-top  # noqa: E402
from vib_flows.app import run_state  # pylint: disable=g-import-not-at-top  # noqa: E402

result = {}
for strategy_name in ("default", "mirrored"):
  config = helpers.two_cpu_config(strategy_name)
  config.train.num_epochs = 3
  # distributed_steps.use_xla decides per strategy.
  config.train.jit_compile = True
  strategy = distribute.make_strategy(config.runtime)
  with tempfile.TemporaryDirectory() as workdir:
    state = run_state.build_state(config, workdir, strategy)
    history = epoch_loop.train(state)
  result[strategy_name] = {
      "replicas": strategy.num_replicas_in_sync,
      "loss": [h["loss"] for h in history],
      "steps": [h["step"] for h in history],
  }
print(json.dumps(result))
