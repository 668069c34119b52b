"""tf.distribute strategy from `config.runtime`; only the trainer uses it.

Strategies: "default" (no distribution), "one_device" (the first GPU, else the
CPU), "mirrored" (all local GPUs; without GPUs, the logical CPU devices made by
`runtime.virtual_cpu_devices`), "multi_worker_mirrored" (several machines,
described by the TF_CONFIG environment variable), "tpu".
"""

import json
import os

import tensorflow as tf

STRATEGIES = (
    "default", "one_device", "mirrored", "multi_worker_mirrored", "tpu"
)


def configure_devices(runtime_config):
  """Applies `runtime`: CPU threads and logical CPU devices (before any op).

  Must run before TensorFlow initializes its devices, i.e. first thing in a
  process. `intra_op_threads` / `inter_op_threads` > 0 set TensorFlow's two
  thread pools (0 keeps its default, the number of cores);
  `virtual_cpu_devices` > 1 splits the CPU into logical devices, which lets
  the mirrored strategies be tested on a machine without GPUs.

  Raises:
    RuntimeError: TensorFlow already started with other settings.
  """
  _configure_threads(runtime_config)
  n = int(runtime_config.virtual_cpu_devices)
  if n < 0:
    raise ValueError(f"runtime.virtual_cpu_devices must be >= 0, got {n}.")
  if n <= 1:
    return
  cpu = tf.config.list_physical_devices("CPU")[0]
  wanted = [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
  try:
    tf.config.set_logical_device_configuration(cpu, wanted)
  except RuntimeError:  # Devices already initialized in this process.
    have = len(tf.config.list_logical_devices("CPU"))
    if have != n:
      raise RuntimeError(
          f"runtime.virtual_cpu_devices={n} but TensorFlow already started "
          f"with {have} CPU device(s); set it before any TensorFlow op."
      ) from None


def _configure_threads(runtime_config):
  """Sets the thread pools named in `runtime` (0: TensorFlow's default)."""
  threading = tf.config.threading
  for field, getter, setter in (
      ("intra_op_threads", threading.get_intra_op_parallelism_threads,
       threading.set_intra_op_parallelism_threads),
      ("inter_op_threads", threading.get_inter_op_parallelism_threads,
       threading.set_inter_op_parallelism_threads)):
    n = int(runtime_config.get(field, 0))
    if n < 0:
      raise ValueError(f"runtime.{field} must be >= 0, got {n}.")
    if n == 0 or getter() == n:
      continue
    try:
      setter(n)
    except RuntimeError:  # The runtime already started with other pools.
      raise RuntimeError(
          f"runtime.{field}={n} but TensorFlow already started with "
          f"{getter() or 'its default'}; set it before any TensorFlow op."
      ) from None


def _local_devices():
  gpus = tf.config.list_logical_devices("GPU")
  if gpus:
    return [d.name for d in gpus]
  return [d.name for d in tf.config.list_logical_devices("CPU")]


def make_strategy(runtime_config):
  """Returns the `tf.distribute.Strategy` named by `runtime.strategy`.

  Raises:
    ValueError: unknown strategy name (the message lists the valid ones).
  """
  name = runtime_config.strategy
  if name not in STRATEGIES:
    raise ValueError(
        f"Unknown runtime.strategy {name!r}; valid: {', '.join(STRATEGIES)}."
    )
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "one_device":
    return tf.distribute.OneDeviceStrategy(_local_devices()[0])
  if name == "mirrored":
    devices = _local_devices()
    # Without GPUs, reduce on the CPU (NCCL is GPU-only).
    ops = None if tf.config.list_logical_devices("GPU") else (
        tf.distribute.ReductionToOneDevice()
    )
    return tf.distribute.MirroredStrategy(devices, cross_device_ops=ops)
  if name == "multi_worker_mirrored":
    if "TF_CONFIG" not in os.environ:
      raise ValueError(
          "runtime.strategy='multi_worker_mirrored' needs the TF_CONFIG "
          "environment variable describing the cluster."
      )
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.AUTO
    )
    return tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=options
    )
  resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
  tf.config.experimental_connect_to_cluster(resolver)
  tf.tpu.experimental.initialize_tpu_system(resolver)
  return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy):
  """True on the process that writes checkpoints, summaries and exports."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not isinstance(
      strategy, tf.distribute.MultiWorkerMirroredStrategy
  ):
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  if task_type is None:
    return True
  if task_type == "chief":
    return True
  cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
  return task_type == "worker" and task_id == 0 and "chief" not in cluster


def num_workers(strategy):
  """The number of worker processes of `strategy` (1 outside multi-worker)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not isinstance(
      strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return 1
  spec = resolver.cluster_spec().as_dict()
  return max(1, len(spec.get("worker", [])) + len(spec.get("chief", [])))


def worker_id(strategy):
  """The task id of this worker (0 outside multi-worker training)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or resolver.task_id is None:
    return 0
  return int(resolver.task_id)


def check_batch_size(global_batch_size, strategy):
  """Refuses a global batch that does not split evenly over the replicas."""
  n = strategy.num_replicas_in_sync
  if global_batch_size < 1:
    raise ValueError(f"train.batch_size must be >= 1, got {global_batch_size}.")
  if global_batch_size % n:
    raise ValueError(
        f"train.batch_size={global_batch_size} is not divisible by the "
        f"{n} replicas of the {type(strategy).__name__}."
    )
