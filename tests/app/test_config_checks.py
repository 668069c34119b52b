"""Impossible configs are refused before any work, naming the problem."""

import json
import subprocess
import sys
import types

import pytest

from tests import helpers
from vib_flows import flows
from vib_flows import models
from vib_flows.app import config_checks
from vib_flows.app import distribute
from vib_flows.app import model_builder


@pytest.mark.parametrize("field,value,message", [
    ("flow.name", "plnar", "Unknown flow.name 'plnar'.*planar.*radial"),
    ("model.likelihood", "poisson", "Unknown model.likelihood.*bernoulli"),
    ("runtime.strategy", "horovod", "Unknown runtime.strategy.*mirrored"),
    ("loss.estimator", "vimco", "Unknown loss.estimator.*score_function"),
    ("model.kind", "gan", "Unknown model.kind.*vib"),
    ("model.prior", "vamp", "Unknown model.prior.*mixture"),
    ("optimizer.name", "lion", "Unknown optimizer.name.*adam"),
    ("model.latent_dim", 0, "model.latent_dim must be > 0, got 0"),
    ("train.batch_size", -5, "train.batch_size must be > 0"),
    ("loss.beta", -0.1, "loss.beta must be >= 0, got -0.1"),
    ("eval.num_importance_samples", 0,
     "eval.num_importance_samples must be >= 1"),
    ("flow.num_flows", -1, "flow.num_flows must be >= 0"),
    ("model.num_levels", 1, "model.num_levels must be >= 2"),
    ("flow.num_ortho_vectors", 99,
     "num_ortho_vectors=99 exceeds model.latent_dim"),
    ("optimizer.learning_rate", 0.0, "optimizer.learning_rate must be > 0"),
    ("flow.forget_bias", float("nan"), "flow.forget_bias must be finite"),
    ("optimizer.learning_rate", float("nan"),
     r"optimizer.learning_rate must be a finite number > 0, got nan"),
    ("loss.beta", float("inf"), r"loss.beta must be a finite number >= 0"),
    ("optimizer.clipnorm", float("nan"), "optimizer.clipnorm must be a finite"),
    ("model.min_scale", float("nan"), r"model.min_scale must be a finite"),
    ("train.num_epochs", 0, r"train.num_epochs must be >= 1, got 0"),
    ("data.num_classes", -1, r"data.num_classes must be >= 0, got -1"),
    ("runtime.intra_op_threads", -1, "runtime.intra_op_threads must be >= 0"),
    ("runtime.inter_op_threads", -2, "runtime.inter_op_threads must be >= 0"),
    ("export.max_log_likelihood_rows", 0,
     "export.max_log_likelihood_rows must be > 0, got 0"),
])
def test_impossible_config_is_refused(field, value, message):
  config = helpers.config("default")
  section, name = field.split(".")
  config[section][name] = value
  with pytest.raises(ValueError, match=message):
    config_checks.validate(config)


# What each shipped config's docstring promises: model kind, data set and
# likelihood, latent size, flow (name, layers, amortized), prior.
SHIPPED = {
    "default": ("vae", "digits", "categorical", 16, "planar", 0, False),
    "vae_digits": ("vae", "digits", "categorical", 16,
                   "sylvester_householder", 4, True),
    "vib_digits": ("vib", "digits", "categorical", 16, "iaf", 2, True),
    "vae_mnist": ("vae", "mnist", "bernoulli", 40, "planar", 80, True),
    "sylvester_mnist": ("vae", "binarized_mnist", "bernoulli", 64,
                        "sylvester_orthogonal", 16, True),
    "vib_mnist": ("vib", "mnist", "categorical", 256, "planar", 0, False),
    "test": ("vae", "digits", "categorical", 4, "planar", 2, False),
}
INPUT_SHAPES = {"digits": (64,), "mnist": (28, 28, 1),
                "binarized_mnist": (28, 28, 1)}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_configs_are_valid_and_build_what_they_document(name):
  kind, data_name, likelihood, latent_dim, flow_name, num_flows, amortized = (
      SHIPPED[name])
  config = helpers.config(name)
  config_checks.validate(config)
  assert (config.data.name, config.model.likelihood) == (data_name, likelihood)
  info = types.SimpleNamespace(input_shape=INPUT_SHAPES[data_name],
                               num_classes=10, num_levels=None)
  model = model_builder.build_model(config, info)
  assert isinstance(model, models.VAE if kind == "vae" else models.VIB)
  assert model.latent_dim == latent_dim
  # The stack may interleave Reverse permutations between the flows; a
  # planar stack is one layer of num_flows maps.
  layers = [layer for layer in model.flow.flows
            if not isinstance(layer, flows.Reverse)]
  assert sum(getattr(layer, "num_maps", 1) for layer in layers) == num_flows
  assert {layer.flow_name for layer in layers} <= {flow_name}
  assert model.amortized == amortized
  # A broken copy of the same config is refused, naming the field.
  config.model.latent_dim = 0
  with pytest.raises(ValueError, match="model.latent_dim must be > 0, got 0"):
    config_checks.validate(config)


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
