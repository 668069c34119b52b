"""One worker of a MultiWorkerMirroredStrategy run (TF_CONFIG in the env).

Usage: multi_worker.py REPO_ROOT WORKDIR OUT.npz
Trains the tiny config with train_and_evaluate, then saves its final weights.
"""

import sys

sys.path.insert(0, sys.argv[1])

import numpy as np  # pylint: disable=g-import-not-at-top

from tests import helpers  # pylint: disable=g-import-not-at-top
from vib_flows.app import distribute  # pylint: disable=g-import-not-at-top

config = helpers.config("test")
config.runtime.strategy = "multi_worker_mirrored"
config.export.enabled = False
strategy = distribute.make_strategy(config.runtime)

from vib_flows.app import epoch_loop  # pylint: disable=g-import-not-at-top  # noqa: E402
from vib_flows.app import run_state  # pylint: disable=g-import-not-at-top  # noqa: E402

state = run_state.build_state(config, sys.argv[2], strategy)
epoch_loop.train(state)
weights = {f"w{i}": np.asarray(w) for i, w in enumerate(state.model.weights)}
weights["step"] = np.asarray(state.step)
np.savez(sys.argv[3], **weights)
print("worker done, step", state.step)
