"""tf.data input pipelines for `strategy.distribute_datasets_from_function`.

`make_dataset_fn(split, global_batch_size, training, seed, config)` returns
`dataset_fn(input_context)`. Each input pipeline (one per worker) reads its own
shard of the in-memory split (`Dataset.shard(num_input_pipelines,
input_pipeline_id)`), so the workers' shards are disjoint and together cover
the data, and batches it with the per-replica batch size. Per epoch (one pass
of an iterator) the order is reshuffled; the same seed gives the same orders.

Elements: {"x": float32 [b, *input_shape], "y": int32 [b]} ("y" only when the
split has labels), b = the per-replica batch size (the last evaluation batch
may be smaller).

Dynamic binarization (`data.preprocess = "dynamic"`): x holds grey values
p in [0, 1] and each element is drawn as x ~ Bernoulli(p) with stateless random
ops seeded by (a per-epoch random value, the example's index in the split),
so an example's draw depends only on the seed, the epoch and the example,
not on the batch size or the number of workers or replicas. Training draws
afresh each epoch; evaluation uses one fixed draw (the test set is binarized
once, as in the IWAE and flow papers).

Fresh training sets (a split with a `sampler`, the synthetic data): each pass
of a training iterator draws a whole new training set of N examples,
`split.sampler(N, (a per-epoch random value, seed))`, instead of reading
`split.x`; the draw depends only on the seed and the epoch (every input
pipeline draws the same set and reads its own shard), is neither cached nor
shuffled (the examples are independent draws) and differs from epoch to
epoch, whether the trainer makes a new dataset per epoch (a new seed) or
iterates one dataset again (`rerandomize_each_iteration`). Evaluation reads
the fixed `split.x`.
"""

import numpy as np
import tensorflow as tf

from vib_flows.data import preprocess as preprocess_lib


def _options():
  """No tf.data autotuning model (its prefetch buffer still adapts).

  The trainer makes an iterator per epoch (each epoch's order has its own
  seed). With autotuning, deleting an iterator waits for the tuning thread,
  and the thread competes with the steps for the cores (docs/performance.md).
  The in-memory pipelines here need no tuning: the prefetch buffer grows on
  its own, and `num_parallel_calls=AUTOTUNE` becomes the number of cores; the
  MNIST-shaped pipeline case of the benchmark keeps its throughput.
  """
  options = tf.data.Options()
  options.autotune.enabled = False
  return options


_OPTIONS = _options()


def num_batches(num_examples, batch_size, training):
  """Batches per epoch of one pipeline: floor when training, else ceil."""
  if training:
    return num_examples // batch_size
  return -(-num_examples // batch_size)


def _shard_size(num_examples, num_pipelines, pipeline_id):
  """Size of shard `pipeline_id` of `num_examples` in `num_pipelines` shards."""
  return len(range(pipeline_id, num_examples, num_pipelines))


def _shuffled(ds, shuffle_buffer, num_examples, seed):
  """`ds` shuffled as every training pipeline shuffles: one rule, one place.

  The order it gives depends only on `seed`, the buffer size and the number
  of elements, not on their values: `epoch_order` relies on that.
  """
  buffer = num_examples if shuffle_buffer <= 0 else min(shuffle_buffer,
                                                        num_examples)
  return ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)


def example_arrays(split):
  """The arrays of a split as its batches hold them.

  Returns:
    {"x": float32 [N, *input_shape], "y": int32 [N] (if the split has
    labels)}.
  """
  arrays = {"x": np.asarray(split.x, dtype=np.float32)}
  if split.y is not None:
    arrays["y"] = np.asarray(split.y).astype(np.int32)
  return arrays


def gathers_in_graph(split, config, num_replicas, info=None):
  """Whether the trainer can take training batches from `epoch_order`.

  True for one replica (over all workers) reading a fixed in-memory split:
  no dynamic binarization (its draws are tf.data random ops) and no fresh
  training set per epoch. Then the trainer keeps the split in tensors and
  gathers each batch inside its compiled loop instead of pulling it from a
  tf.data iterator: the same batches, without the iterator's cost
  (docs/performance.md).
  """
  preprocess = (info.preprocess if info is not None
                else preprocess_lib.resolve(config)[2])
  return (num_replicas == 1 and split.sampler is None
          and preprocess != "dynamic")


def epoch_order(num_examples, seed, config):
  """The order in which one training epoch of `make_dataset_fn` reads a split.

  One input pipeline, fixed data (`gathers_in_graph`): the same shuffle with
  the same seed and buffer, run over the indices 0..N-1 instead of the
  examples, so `split.x[order]` batched by the batch size, the last partial
  batch dropped, is what `make_dataset_fn(split, batch, True, seed,
  config)()` gives (tests/data/test_pipeline.py checks it batch for
  batch).

  Returns:
    int64 tensor [num_examples], a permutation of 0..num_examples-1.
  """
  ds = _shuffled(tf.data.Dataset.range(num_examples),
                 int(config.data.shuffle_buffer), num_examples, int(seed))
  return ds.batch(num_examples).with_options(_OPTIONS).get_single_element()


def make_dataset_fn(split, global_batch_size, training, seed, config,
                    info=None):
  """Returns `dataset_fn(input_context)` for one split.

  Args:
    split: a `Split` from `vib_flows.data.load` (x float32 [N, *input_shape],
      y [N] or None).
    global_batch_size: batch size summed over all replicas.
    training: True: shuffle each epoch (seeded), drop the last partial batch
      and, with several input pipelines, the last N % num_input_pipelines
      examples so every replica gets the same number of equal batches (MWMS
      collectives need that). False: keep order and every example.
    seed: integer seed of the shuffle, of dynamic binarization and of fresh
      training sets.
    config: the ConfigDict; reads data.shuffle_buffer, data.cache and (through
      `info` or data.preprocess/model.*) whether binarization is dynamic.
    info: optional `DataInfo`; its `preprocess` overrides the config's.

  Returns:
    `dataset_fn(input_context=None) -> tf.data.Dataset` of dicts {"x", "y"}
    with the per-replica batch size (`input_context.get_per_replica_batch_size`,
    the whole global batch when `input_context` is None).

  Raises:
    ValueError: global_batch_size < 1, the split is empty; dataset_fn raises
      when the global batch does not divide over the replicas, or when a
      training shard is smaller than one batch (the epoch would be empty).
  """
  global_batch_size = int(global_batch_size)
  if global_batch_size < 1:
    raise ValueError(
        f"global_batch_size must be >= 1, got {global_batch_size}.")
  features = example_arrays(split)
  num_examples = features["x"].shape[0]
  if num_examples == 0:
    raise ValueError("Cannot make a data set of an empty split.")
  preprocess = (info.preprocess if info is not None
                else preprocess_lib.resolve(config)[2])
  fresh = training and split.sampler is not None
  dynamic = preprocess == "dynamic" and not fresh
  if dynamic:
    features["index"] = np.arange(num_examples, dtype=np.int64)
  shuffle_buffer = int(config.data.shuffle_buffer)
  cache = bool(config.data.cache)
  seed = int(seed)

  def binarize(element, epoch_random):
    """X ~ Bernoulli(x), seeded by (epoch_random, the example's index)."""
    element = dict(element)
    example_seed = tf.stack([epoch_random, element.pop("index")])
    noise = tf.random.stateless_uniform(tf.shape(element["x"]),
                                        seed=example_seed)
    element["x"] = tf.cast(noise < element["x"], tf.float32)
    return element

  def fresh_examples(epoch_random):
    """A new training set of num_examples, seeded by (epoch_random, seed)."""
    epoch_seed = tf.stack([epoch_random, tf.constant(seed, tf.int64)])
    x_new = tf.cast(split.sampler(num_examples, epoch_seed), tf.float32)
    return tf.data.Dataset.from_tensor_slices({"x": x_new})

  def dataset_fn(input_context=None):
    num_pipelines, pipeline_id = 1, 0
    batch_size = global_batch_size
    if input_context is not None:
      num_pipelines = input_context.num_input_pipelines
      pipeline_id = input_context.input_pipeline_id
      batch_size = input_context.get_per_replica_batch_size(global_batch_size)
    usable = num_examples
    if training and num_pipelines > 1:
      usable = num_examples - num_examples % num_pipelines
    shard_size = _shard_size(usable, num_pipelines, pipeline_id)
    if training and shard_size < batch_size:
      raise ValueError(
          f"Input pipeline {pipeline_id} of {num_pipelines} has {shard_size} "
          f"training examples, fewer than its batch of {batch_size}: every "
          "training epoch would be empty; lower train.batch_size.")

    if fresh:
      ds = tf.data.Dataset.random(
          seed=seed, rerandomize_each_iteration=True).take(1).flat_map(
              fresh_examples)
    else:
      ds = tf.data.Dataset.from_tensor_slices(features)
    if cache and not fresh:
      ds = ds.cache()
    if dynamic:
      # One int64 per example and epoch, independent of sharding: the random
      # stream is zipped on before the shard. Evaluation repeats one stream.
      epoch_random = tf.data.Dataset.random(
          seed=seed, rerandomize_each_iteration=training)
      ds = tf.data.Dataset.zip((ds, epoch_random))
    if usable < num_examples:
      ds = ds.take(usable)
    if num_pipelines > 1:
      ds = ds.shard(num_pipelines, pipeline_id)
    if training and not fresh:
      ds = _shuffled(ds, shuffle_buffer, shard_size, seed)
    if dynamic:
      ds = ds.map(binarize, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=training)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(_OPTIONS)

  return dataset_fn
