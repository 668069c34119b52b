"""A third kind of model, registered by a test, runs through the application.

`Autoencoder` (test only) is built from `LatentVariableModel` alone: an
unlabelled model whose generator predicts the normalized x and whose loss is
the squared error plus beta times the KL,

    loss = E_q ||g(zK) - x||^2 + beta * E_q[log qK(zK|x) - log p(zK)].

It sets what the application asks of a kind (`needs_labels`,
`models_inputs`, `serving_signatures`, `test_metrics`, `serve`);
registered with `model_builder.register_model_kind`, the command line's
trainer trains it, the evaluation writes its metrics and the export writes
its SavedModel, with no change to the application.
"""

import math
import os

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from vib_flows import networks
from vib_flows.app import config_checks
from vib_flows.app import model_builder
from vib_flows.app import modes
from vib_flows.models import latent

KIND = "autoencoder"


class Autoencoder(latent.LatentVariableModel):
  """Squared-error autoencoder with a flow posterior (test only)."""

  term_names = ("loss", "distortion", "kl")
  layer_arguments = latent.LatentVariableModel.layer_arguments + (
      "generator", "input_likelihood")
  serving_signatures = {"reconstruct": latent.Signature("x"),
                        "encode": latent.Signature("x")}

  def __init__(self, data_shape, encoder, flow, generator, prior,
               input_likelihood, **kwargs):
    kwargs.setdefault("name", KIND)
    super().__init__(data_shape, encoder, flow, generator, prior,
                     input_likelihood, **kwargs)
    self.build((None,) + self.data_shape)

  def _reconstruction(self, zk, num_samples):
    """[S*B, d] -> [S, B, prod(data_shape)] float32."""
    out = tf.cast(self.generator(zk), tf.float32)
    return tf.reshape(out, [num_samples, -1, math.prod(self.data_shape)])

  def per_example_loss(self, batch, beta, seed, training=False,
                       example_index=None):
    x = tf.cast(batch["x"], tf.float32)
    beta = tf.cast(beta, tf.float32)
    samples, kl, kl_s = self._loss_samples(x, seed, training, example_index)
    target = tf.reshape(self.input_likelihood.normalize(x),
                        [1, tf.shape(x)[0], -1])
    recon = self._reconstruction(samples["zk"], self.num_samples)
    distortion_s = tf.reduce_sum(tf.square(recon - target), axis=-1)
    distortion = tf.reduce_mean(distortion_s, axis=0)
    surrogate = self._surrogate(distortion_s, kl, kl_s, beta,
                                samples["log_q0"], training)
    return surrogate, {"loss": distortion + beta * kl,
                       "distortion": distortion, "kl": kl}

  def test_metrics(self, terms, estimates, labels, counts):
    return {"test_distortion": terms["distortion"]}

  def serve(self, signature, inputs, seed, counts):
    if signature == "reconstruct":
      z = self.encode(inputs, seed)["z"]
      return {"x_hat": self._reconstruction(z, 1)[0]}
    return super().serve(signature, inputs, seed, counts)


def build_autoencoder(config, data_info, parts):
  generator = networks.MLP(math.prod(parts.input_shape),
                           config.model.decoder_hidden,
                           config.model.activation, name="generator")
  x_likelihood = model_builder.input_likelihood(config, data_info,
                                                parts.num_levels)
  return Autoencoder(parts.input_shape, parts.encoder, parts.flow, generator,
                     parts.prior, x_likelihood, **parts.options)


@pytest.fixture
def autoencoder_kind(monkeypatch):
  """Registers KIND for one test (the registry is restored afterwards)."""
  monkeypatch.setattr(model_builder, "_MODEL_KINDS",
                      dict(model_builder._MODEL_KINDS))
  model_builder.register_model_kind(KIND, Autoencoder, build_autoencoder)
  return KIND


def test_unregistered_kind_is_refused():
  config = helpers.config("test", **{"model.kind": KIND})
  with pytest.raises(ValueError, match=f"Unknown model.kind '{KIND}'; "
                     "valid: vae, vib"):
    config_checks.validate(config)


def test_registered_kind_is_known_by_its_class(autoencoder_kind):
  assert model_builder.model_kinds()[-1] == autoencoder_kind
  cls = model_builder.model_class(autoencoder_kind)
  assert cls is Autoencoder
  assert not cls.needs_labels and not cls.models_inputs


def test_third_kind_trains_evaluates_and_exports(autoencoder_kind, tmp_path):
  config = helpers.config("test", **{
      "model.kind": autoencoder_kind, "export.base_dir": str(tmp_path / "ex"),
      "export.warmup_requests": False})
  config.train.num_epochs = 2
  config.loss.beta = 0.5
  metrics = modes.train_and_evaluate(config, str(tmp_path / "run"))

  assert {"test_loss", "test_kl", "test_distortion",
          "num_test_examples"} <= set(metrics)
  assert metrics["step"] == 20
  # test_loss is the mean of distortion + beta * KL at the model's beta.
  assert metrics["test_loss"] == pytest.approx(
      metrics["test_distortion"] + 0.5 * metrics["test_kl"], rel=1e-5)
  written = helpers.read_json(tmp_path / "run" / "metrics.json")
  assert written == pytest.approx(metrics)
  assert not os.path.exists(tmp_path / "run" / "reconstructions.png")

  path = helpers.read_json(tmp_path / "run" / "export.json")["path"]
  assert path == str(tmp_path / "ex" / f"{autoencoder_kind}_digits" / "1")
  loaded = tf.saved_model.load(path)
  assert set(loaded.signatures) == {"serving_default", "reconstruct",
                                    "encode"}
  x = tf.constant(np.full((3, 64), 8.0, np.float32))  # Levels 0..16, scaled.
  x = x / 16.0
  out = loaded.signatures["serving_default"](x=x)
  assert set(out) == {"x_hat"} and out["x_hat"].shape == (3, 64)
  again = loaded.signatures["reconstruct"](x=x)
  np.testing.assert_array_equal(out["x_hat"], again["x_hat"])
  encoded = loaded.signatures["encode"](x=x)
  assert set(encoded) == {"z_mean", "z_stddev", "z"}
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"reconstruct: x must be in \[0, 1\]"):
    loaded.signatures["reconstruct"](x=x * 16.0)
