"""The deep variational information bottleneck with a flow posterior.

The VIB of Alemi et al. 2017 ("Deep Variational Information Bottleneck"):

    loss = E_q[-log p(y|zK)] + beta * E_q[log qK(zK|x) - log p(zK)]
"""

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from vib_flows import distributions
from vib_flows import flows
from vib_flows import networks
from vib_flows import objectives
from vib_flows.models.latent import LatentVariableModel
from vib_flows.models.latent import SampleCounts
from vib_flows.models.latent import Signature


@keras.saving.register_keras_serializable(package="vib_flows")
class VIB(LatentVariableModel):
  """Deep variational information bottleneck (Alemi et al. 2017) with flows.

  Args:
    classifier: `networks.MLP` with num_classes outputs (logits of p(y|zK)).
    labels: `distributions.CategoricalLabels`.
    input_likelihood: likelihood of x, used only to normalize and check x.
    predict_samples: S used by `call`/`predict` (Alemi et al. used 12).
    (other args: `LatentVariableModel`.)
  """

  term_names = ("loss", "cross_entropy", "kl", "accuracy")
  needs_labels = True
  serving_signatures = {"classify": Signature("x"), "encode": Signature("x")}
  layer_arguments = LatentVariableModel.layer_arguments + (
      "classifier", "labels", "input_likelihood")

  def __init__(self, data_shape: Sequence[int], encoder: networks.Encoder,
               flow: flows.FlowStack | None, classifier: keras.layers.Layer,
               prior: distributions.Prior,
               labels: distributions.CategoricalLabels,
               input_likelihood: distributions.Likelihood,
               predict_samples: int = 12, **kwargs: Any):
    kwargs.setdefault("name", "vib")
    super().__init__(data_shape, encoder, flow, classifier, prior,
                     input_likelihood, **kwargs)
    self.labels = labels
    self.num_classes = labels.num_classes
    self.predict_samples = int(predict_samples)
    self.build((None,) + self.data_shape)

  @property
  def classifier(self) -> keras.layers.Layer:
    """The generator: zK [N, d] -> class logits [N, num_classes]."""
    return self.generator

  def _logits(self, zk: tf.Tensor, num_samples: int | tf.Tensor
              ) -> tf.Tensor:
    """[S*B, d] -> [S, B, C] float32 logits."""
    logits = tf.cast(self.generator(zk), tf.float32)
    return tf.reshape(logits, [num_samples, -1, self.num_classes])

  def per_example_loss(
      self, batch: dict[str, tf.Tensor], beta: float | tf.Tensor,
      seed: tf.Tensor, training: bool = False,
      example_index: tf.Tensor | None = None,
  ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """VIB loss per example: cross-entropy + beta * KL.

    Args:
      batch: {"x": [B, *data_shape] float32, "y": [B] integer labels}.
      beta: scalar KL weight (the bottleneck beta).
      seed: int tensor [2].
      training: update the score-function baseline.
      example_index: optional [B] integer indices; each example's noise then
        depends only on (seed, its index) (see `_latent_samples`).

    Returns:
      surrogate [B] and terms {"loss", "cross_entropy", "kl", "accuracy"}, each
      [B] float32: cross_entropy = mean_s -log p(y|zK_s); accuracy = 1 when
      argmax of mean_s p(.|zK_s) equals y.
    """
    if "y" not in batch:
      raise ValueError("The VIB needs labels: batch['y'] is missing.")
    x = tf.cast(batch["x"], tf.float32)
    y = tf.cast(batch["y"], tf.int32)
    beta = tf.cast(beta, tf.float32)
    samples, kl, kl_s = self._loss_samples(x, seed, training, example_index)
    logits = self._logits(samples["zk"], self.num_samples)
    nll_s = -self.labels.log_prob(logits, y[tf.newaxis])  # [S, B]
    cross_entropy = tf.reduce_mean(nll_s, axis=0)
    probs = tf.reduce_mean(tf.nn.softmax(logits, axis=-1), axis=0)
    correct = tf.equal(tf.argmax(probs, axis=-1, output_type=tf.int32), y)
    terms = {"loss": objectives.vib_loss(cross_entropy, kl, beta),
             "cross_entropy": cross_entropy, "kl": kl,
             "accuracy": tf.cast(correct, tf.float32)}
    surrogate = self._surrogate(nll_s, kl, kl_s, beta, samples["log_q0"],
                                training)
    return surrogate, terms

  def predict_proba(self, x: tf.Tensor, num_samples: int | tf.Tensor,
                    seed: tf.Tensor,
                    example_index: tf.Tensor | None = None) -> tf.Tensor:
    """p(y|x) ~= mean_s p(y|zK_s): [B, *data_shape] -> [B, num_classes].

    `example_index` (optional [B]): see `_latent_samples`.
    """
    logits = self.predict_logits(x, num_samples, seed,
                                 example_index=example_index)
    return tf.reduce_mean(tf.nn.softmax(logits, axis=-1), axis=0)

  def predict_logits(self, x: tf.Tensor, num_samples: int | tf.Tensor,
                     seed: tf.Tensor,
                     example_index: tf.Tensor | None = None) -> tf.Tensor:
    """Logits of p(y|zK_s), s = 1..S: [B, *data_shape] -> [S, B, C].

    The posterior samples of `predict_proba` with the same arguments (a
    margin attack, `adversarial.pgd(loss="margin")`, reads them).
    """
    x = tf.convert_to_tensor(x, tf.float32)
    loc, scale, context = self._encode_params(x)
    samples = self._latent_samples(loc, scale, context, num_samples, seed,
                                   example_index=example_index)
    return self._logits(samples["zk"], num_samples)

  def call(self, inputs: Any, training: bool = False) -> tf.Tensor:
    """Class probabilities averaged over `predict_samples` samples, [B, C]."""
    x = self._as_batch(inputs)["x"]
    return self.predict_proba(x, self.predict_samples, self._next_seed())

  # ------------------------------------------------- evaluation and serving
  def test_estimates(self, batch: Mapping[str, tf.Tensor], seed: tf.Tensor,
                     counts: SampleCounts) -> dict[str, tf.Tensor]:
    """{"correct": [B] float32}: 1 where argmax_y p(y|x) equals batch["y"].

    p(y|x) from `predict_proba` with S = counts.predictive_samples and
    example_index = batch["index"].
    """
    probs = self.predict_proba(batch["x"], int(counts.predictive_samples),
                               seed, example_index=batch["index"])
    correct = tf.equal(tf.argmax(probs, -1, output_type=tf.int32),
                       tf.cast(batch["y"], tf.int32))
    return {"correct": tf.cast(correct, tf.float32)}

  def test_metrics(self, terms: Mapping[str, float],
                   estimates: Mapping[str, float],
                   labels: np.ndarray | None,
                   counts: SampleCounts) -> dict[str, Any]:
    """Accuracy, cross-entropy and the information bounds (Alemi et al. 2017).

    Returns:
      {"test_accuracy": the fraction with argmax p(y|x) = y (S samples),
      "test_cross_entropy": mean_n E_q[-log p(y_n|zK)], "test_izx_upper":
      test_kl >= I(Z;X), "test_izy_lower": H(Y) - test_cross_entropy <=
      I(Z;Y), "label_entropy": H(Y) of `labels` (num_classes classes),
      "vib_num_samples": S}.

    Raises:
      ValueError: no labels.
    """
    if labels is None:
      raise ValueError("The VIB's test metrics need the split's labels.")
    h_y = float(objectives.label_entropy(labels, self.num_classes))
    bounds = objectives.information_bounds(terms["kl"],
                                           terms["cross_entropy"], h_y)
    return {
        "test_accuracy": estimates["correct"],
        "test_cross_entropy": terms["cross_entropy"],
        "test_izx_upper": bounds["izx_upper"],
        "test_izy_lower": bounds["izy_lower"],
        "label_entropy": h_y,
        "vib_num_samples": int(counts.predictive_samples),
    }

  def serve(self, signature: str, inputs: tf.Tensor, seed: tf.Tensor,
            counts: SampleCounts) -> dict[str, tf.Tensor]:
    """Outputs of the serving signatures "classify" and "encode".

    classify: x [B, *data_shape] -> probabilities [B, num_classes] (the mean
    of p(y|zK) over S = counts.predictive_samples samples), class_ids [B]
    int64 (their argmax). encode: see `LatentVariableModel.serve`.
    """
    if signature == "classify":
      probs = self.predict_proba(inputs, int(counts.predictive_samples), seed)
      return {"probabilities": probs,
              "class_ids": tf.argmax(probs, axis=-1, output_type=tf.int64)}
    return super().serve(signature, inputs, seed, counts)

  def validate_batch(self, batch: Mapping[str, Any]) -> None:
    super().validate_batch(batch)
    if "y" in batch:
      distributions.validate_labels(np.asarray(batch["y"]), self.num_classes)

  def get_config(self) -> dict[str, Any]:
    config = super().get_config()
    config.update(predict_samples=self.predict_samples)
    return config
