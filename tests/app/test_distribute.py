"""The strategy and the devices (`vib_flows.app.distribute`).

A global batch must divide among the replicas; the multi-worker strategy
needs TF_CONFIG; the thread pools are set before TensorFlow starts, and
cannot change after.
"""

import json
import subprocess
import sys

import pytest

from tests import helpers
from vib_flows.app import distribute


def test_batch_not_divisible_by_replicas_is_refused():
  class TwoReplicas:
    num_replicas_in_sync = 2

  with pytest.raises(ValueError,
                     match="101 is not divisible by the 2 replicas"):
    distribute.check_batch_size(101, TwoReplicas())
  distribute.check_batch_size(100, TwoReplicas())


def test_multi_worker_without_tf_config_is_refused(monkeypatch):
  monkeypatch.delenv("TF_CONFIG", raising=False)
  config = helpers.config("default")
  config.runtime.strategy = "multi_worker_mirrored"
  with pytest.raises(ValueError, match="TF_CONFIG"):
    distribute.make_strategy(config.runtime)


_THREADS_SCRIPT = """
import json
import tensorflow as tf
from tests import helpers
from vib_flows.app import distribute
config = helpers.config("test")
config.runtime.intra_op_threads = 1
config.runtime.inter_op_threads = 3
distribute.configure_devices(config.runtime)
float(tf.reduce_sum(tf.ones([4, 4]) @ tf.ones([4, 4])))  # Starts TensorFlow.
threading = tf.config.threading
pools = [threading.get_intra_op_parallelism_threads(),
         threading.get_inter_op_parallelism_threads()]
distribute.configure_devices(config.runtime)  # The same again: accepted.
config.runtime.intra_op_threads = 2
try:
  distribute.configure_devices(config.runtime)
  error = ""
except RuntimeError as e:
  error = str(e)
print(json.dumps({"pools": pools, "error": error}))
"""


def test_runtime_thread_pools_are_set_before_tensorflow_starts():
  out = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT],
                       cwd=helpers.ROOT, env=helpers.env(),
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["pools"] == [1, 3]
  assert "runtime.intra_op_threads=2" in result["error"]
  assert "already started with 1" in result["error"]
