"""Data for vib_flows: offline digits, the user's npz arrays, TFDS data sets.

Public API:
  load(config) -> DataSplits(train, validation, test, info): the data set of
    `config.data.name`, in memory, converted to the likelihood's
    representation and validated (ValueError before any training).
  make_dataset_fn(split, global_batch_size, training, seed, config) ->
    dataset_fn(input_context) for `strategy.distribute_datasets_from_function`.
  gathers_in_graph(split, config, num_replicas), epoch_order(num_examples,
    seed, config): whether the trainer may gather training batches inside
    its loop, and the permutation an epoch's pipeline reads (the same
    batches without a tf.data iterator); example_arrays(split), the
    arrays of a split as its batches hold them.
  validate_split(split, info, likelihood, kind, name): the checks `load` runs.
  Split, DataInfo, DataSplits: the containers.
  resolve_preprocess(config) -> (kind, likelihood, preprocess), "auto" resolved.

Names (`config.data.name`): "digits" (scikit-learn's 8x8 digits, the split of
Tomczak's "Deep Generative Modeling" code: 1000 train / 350 validation / 447
test), "npz:/path/file.npz", "idx:/path/to/folder" (the four IDX files of
MNIST, Fashion-MNIST or KMNIST; `vib_flows.data.idx`), "synthetic:banana" /
"synthetic:bimodal" / "synthetic:ring" (binary data from a known 2-D latent
model, exact log p(x); see `vib_flows.data.synthetic`), or a TensorFlow
Datasets name ("mnist", "binarized_mnist", ..., and the local offline
"vib_flows_digits").

  exact_test_metrics(splits, metrics) -> test_exact_log_likelihood,
    test_exact_gap, test_exact_iw_gap for data from a known model ({} else).
"""

from vib_flows.data.containers import DataInfo
from vib_flows.data.containers import DataSplits
from vib_flows.data.containers import Split
from vib_flows.data.loader import load
from vib_flows.data.pipeline import epoch_order
from vib_flows.data.pipeline import example_arrays
from vib_flows.data.pipeline import gathers_in_graph
from vib_flows.data.pipeline import make_dataset_fn
from vib_flows.data.pipeline import num_batches
from vib_flows.data.preprocess import resolve as resolve_preprocess
from vib_flows.data.synthetic import exact_test_metrics
from vib_flows.data.validation import validate_split
from vib_flows.data.validation import validate_splits

__all__ = [
    "TFDS_DIGITS_NAME",
    "DataInfo",
    "DataSplits",
    "Split",
    "epoch_order",
    "example_arrays",
    "exact_test_metrics",
    "gathers_in_graph",
    "load",
    "make_dataset_fn",
    "num_batches",
    "resolve_preprocess",
    "validate_split",
    "validate_splits",
]

TFDS_DIGITS_NAME = "vib_flows_digits"  # Registered on first TFDS use.
