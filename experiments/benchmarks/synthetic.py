"""Configs and synthetic in-memory data of the benchmark cases.

Every training case is MNIST-shaped: 784 binary inputs, batch 128, Bernoulli
likelihood (VAE) or 10 classes (VIB). The data are random, so the numbers
measure speed only; the containers are built directly (no download).
"""

import numpy as np

import experiments
from vib_flows import data as data_lib
from vib_flows.app import config_files

INPUT_DIM = 784
NUM_CLASSES = 10
BATCH_SIZE = 128

# name -> (model kind, flow name, number of flows). Flows are global
# (flow.amortized = False, the default config).
TRAIN_CASES = {
    "vae_none": ("vae", "planar", 0),
    "vae_planar8": ("vae", "planar", 8),
    "vae_planar32": ("vae", "planar", 32),
    "vae_iaf4": ("vae", "iaf", 4),
    "vae_sylvester4": ("vae", "sylvester_orthogonal", 4),
    "vib_none": ("vib", "planar", 0),
}


def case_config(name, jit_compile):
  """Returns the ml_collections config of training case `name`.

  VAE cases: encoder and decoder 784-512-512, latent 40 (Rezende & Mohamed
  2015 shapes). VIB: encoder 784-1024-1024, latent 256, softmax classifier
  on z (Alemi et al. 2017 shapes, configs/vib_mnist.py). Everything else is
  configs/default.py (Adam 1e-3, beta 1, one posterior sample).

  Args:
    name: a key of `TRAIN_CASES`.
    jit_compile: value of `train.jit_compile` (XLA for the gradients).
  """
  kind, flow_name, num_flows = TRAIN_CASES[name]
  config = default_config()
  config.data.name = "synthetic_mnist"
  config.model.kind = kind
  config.flow.name = flow_name
  config.flow.num_flows = num_flows
  config.train.batch_size = BATCH_SIZE
  config.train.jit_compile = bool(jit_compile)
  config.export.enabled = False
  if kind == "vae":
    config.data.preprocess = "static"
    config.model.likelihood = "bernoulli"
    config.model.latent_dim = 40
    config.model.encoder_hidden = (512, 512)
    config.model.decoder_hidden = (512, 512)
  else:
    config.data.preprocess = "scale"
    config.model.likelihood = "bernoulli"
    config.model.latent_dim = 256
    config.model.encoder_hidden = (1024, 1024)
    config.model.decoder_hidden = ()
  return config


def default_config():
  """configs/default.py of the source tree (an editable install)."""
  return config_files.load(experiments.config_path("default"))


def splits(num_train, seed=0):
  """Synthetic `DataSplits`: binary x [N, 784] float32, labels y [N] int64.

  Binary pixels are valid for every preprocess the cases use ("static"
  binary, "scale" in [0, 1]).
  """
  rng = np.random.default_rng(seed)

  def split(n):
    x = (rng.random((n, INPUT_DIM), dtype=np.float32) < 0.3).astype(np.float32)
    y = rng.integers(0, NUM_CLASSES, size=n, dtype=np.int64)
    return data_lib.Split(x, y)

  train = split(int(num_train))
  return data_splits(train, split(BATCH_SIZE), "static")


def data_splits(train, test, preprocess):
  """`DataSplits` of MNIST-shaped `Split`s (test is also the validation).

  Args:
    train: the training `Split` ([N, INPUT_DIM] inputs, NUM_CLASSES labels).
    test: the test `Split`.
    preprocess: the `DataInfo.preprocess` to record.
  """
  info = data_lib.DataInfo(
      name="synthetic_mnist", input_shape=(INPUT_DIM,),
      num_classes=NUM_CLASSES, num_levels=None, preprocess=preprocess)
  return data_lib.DataSplits(train, test, test, info)
