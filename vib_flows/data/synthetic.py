"""Synthetic binary data from a known 2-D latent model.

Data names `data.name` "synthetic:*".

The generative model ("the true model"):

    z ~ N(0, I_2),   x_d | z ~ Bernoulli(sigmoid(f_d(z))),   d = 1..64,
    f(z) = W2 tanh(W1 phi(z) + b1) + b2

with fixed weights drawn once from a seeded numpy generator and a feature map
phi that makes the true posteriors p(z|x) non-Gaussian:

  "banana":  phi(z) = (z1 / 4, z2 - 0.6 z1^2): x sees z1 weakly and z2
             through a parabola, so p(z|x) lies along a curved ridge.
  "bimodal": phi(z) = (z1^2 / 2, z2): x is unchanged by z1 -> -z1, so every
             p(z|x) is symmetric in z1, two modes when x says |z1| is large.
  "ring":    phi(z) = (|z|^2 / 2,): x only sees the radius, so p(z|x) is a
             ring (or a disc around 0).

Because z is 2-D, log p(x) is known exactly by quadrature
(`vib_flows.quadrature`), and the gap log p(x) - ELBO of a trained model is
measurable. Splits: the validation and test sets are fixed draws (the same for
every run and config.seed); the training split holds one fixed draw too (for
shapes and checks) but the input pipeline draws a fresh training set each
epoch (`Split.sampler`, keyed by the epoch's seed), so there is nothing to
overfit.
"""

import dataclasses
import functools
from typing import Any

import numpy as np
import tensorflow as tf

from vib_flows import quadrature
from vib_flows import synthetic_truth
from vib_flows.app import faults
from vib_flows.data.containers import RawData
from vib_flows.data.containers import Split

PREFIX = "synthetic:"
NUM_PIXELS = synthetic_truth.NUM_PIXELS  # D, shown as 8x8 images.
HIDDEN_UNITS = synthetic_truth.HIDDEN_UNITS
NUM_TRAIN = 10_000  # Training examples per epoch (drawn afresh each epoch).
NUM_VALIDATION = 1_000
NUM_TEST = 1_000
NUM_LEVELS = 2  # Binary pixels.
# Stateless seed (SPLIT_SEED, split id) of the fixed draws.
SPLIT_SEED = 424_242
SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}


# The true networks live in the library (`vib_flows.synthetic_truth`), which
# the true decoder shares; their names stay importable from here.
FEATURES = synthetic_truth.FEATURES
VARIANTS = synthetic_truth.VARIANTS
NAMES = tuple(PREFIX + v for v in VARIANTS)
true_weights = synthetic_truth.true_weights
true_logits = synthetic_truth.true_logits
bernoulli_log_likelihood = synthetic_truth.bernoulli_log_likelihood


def is_synthetic_name(name) -> bool:
  """True for data set names of this module ("synthetic:..."), valid or not."""
  return str(name).startswith(PREFIX)


def variant_of(name) -> str:
  """"synthetic:banana" -> "banana".

  Raises:
    faults.ConfigError: (a ValueError) the name is not one of `NAMES` (the
      message lists them).
  """
  name = str(name)
  variant = name[len(PREFIX):] if is_synthetic_name(name) else None
  if variant not in FEATURES:
    raise faults.ConfigError(
        f"Unknown synthetic data set {name!r}; valid names: "
        f"{', '.join(NAMES)}.")
  return variant


def sample(variant: str, num_examples, seed) -> tf.Tensor:
  """X ~ p(x) of the true model: float32 [num_examples, D] of 0s and 1s.

  Args:
    variant: one of `VARIANTS`.
    num_examples: N.
    seed: stateless seed, int tensor [2]; z and x come from
      `stateless_fold_in(seed, 0)` and `stateless_fold_in(seed, 1)`.
  """
  seed = tf.convert_to_tensor(seed)
  fold = tf.random.experimental.stateless_fold_in
  z = tf.random.stateless_normal([num_examples, 2], seed=fold(seed, 0))
  probs = tf.sigmoid(true_logits(z, variant))
  noise = tf.random.stateless_uniform(tf.shape(probs), seed=fold(seed, 1))
  return tf.cast(noise < probs, tf.float32)


@dataclasses.dataclass(frozen=True)
class FreshDraws:
  """`Split.sampler` of the training split: a new training set per seed.

  `FreshDraws(variant)(num_examples, seed)` is `sample(variant, num_examples,
  seed)`: float32 [num_examples, D] binary x for an int tensor seed [2].
  """

  variant: str

  def __call__(self, num_examples, seed):
    return sample(self.variant, num_examples, seed)


def load_raw(name) -> RawData:
  """The fixed draws of the three splits (see the module docstring).

  Returns:
    A `RawData`: x float32 [N, 64] of 0s and 1s, no labels, levels 2; train
    N = NUM_TRAIN, validation NUM_VALIDATION, test NUM_TEST.

  Raises:
    ValueError: an unknown name (the valid ones are listed).
  """
  variant = variant_of(name)
  sizes = {"train": NUM_TRAIN, "validation": NUM_VALIDATION,
           "test": NUM_TEST}
  splits = {
      split: Split(sample(variant, n, [SPLIT_SEED, SPLIT_IDS[split]]).numpy())
      for split, n in sizes.items()
  }
  return RawData(train=splits["train"], validation=splits["validation"],
                 test=splits["test"], levels=NUM_LEVELS, num_classes=None)


def exact_log_likelihood(name, x, num_points: int = quadrature.NUM_POINTS,
                         bound: float = quadrature.BOUND) -> np.ndarray:
  """Log p(x) under the true model of `name`, by quadrature.

  Args:
    name: "synthetic:VARIANT".
    x: [N, 64] binary examples.
    num_points: points per axis of the quadrature grid
      (`vib_flows.quadrature`).
    bound: the grid spans [-bound, bound] on each axis.

  Returns:
    float64 [N], nats.
  """
  return quadrature.log_marginal_likelihood(
      bernoulli_log_likelihood(variant_of(name)), x, num_points,
      bound).numpy()


def check_model(kind: str, likelihood: str, preprocess: str,
                model_class: Any) -> None:
  """Refuses models that do not fit the synthetic data.

  The data are unlabelled binary vectors from a Bernoulli model: only a
  model of x (`models_inputs`, the VAE) that needs no labels, with the
  Bernoulli likelihood, on x kept binary ("static", "threshold", "dynamic"
  and "scale" all leave 0/1 values as they are), models them.

  Args:
    kind: config.model.kind.
    likelihood: config.model.likelihood.
    preprocess: the resolved data.preprocess.
    model_class: the model class of `kind`
      (`model_builder.model_class(kind)`).

  Raises:
    ValueError: naming the field to change.
  """
  if model_class.needs_labels or not model_class.models_inputs:
    raise ValueError(
        f"The synthetic data have no labels: model.kind must be 'vae', got "
        f"{kind!r}.")
  if likelihood != "bernoulli":
    raise ValueError(
        "The synthetic data are binary (a Bernoulli true model): "
        f"model.likelihood must be 'bernoulli', got {likelihood!r}.")
  if preprocess not in ("static", "threshold", "dynamic", "scale"):
    raise ValueError(
        "The synthetic data are binary: data.preprocess must keep them so "
        f"(auto, static, threshold, dynamic or scale), got {preprocess!r}.")


def with_truth(splits, name):
  """`splits` (loaded from `load_raw(name)`) with the true model attached.

  Returns:
    A copy whose training split draws a fresh set each epoch
    (`Split.sampler` = `FreshDraws`) and whose `exact_log_likelihood` is
    `exact_log_likelihood(name, .)`.
  """
  variant = variant_of(name)
  train = dataclasses.replace(splits.train, sampler=FreshDraws(variant))
  return dataclasses.replace(
      splits, train=train,
      exact_log_likelihood=functools.partial(exact_log_likelihood, name))


def exact_test_metrics(splits, metrics) -> dict:
  """Exact-likelihood test metrics of a VAE on data from a known model.

  Args:
    splits: `DataSplits`; nothing is returned when its
      `exact_log_likelihood` is None (real data).
    metrics: the VAE's test metrics, with "test_elbo" and
      "test_log_likelihood" (the importance-weighted estimate).

  Returns:
    {} for real data; else {"test_exact_log_likelihood": mean log p(x) of the
    test set under the true model, "test_exact_gap": that minus test_elbo
    (with the true decoder: the mean KL(q(z|x) || p(z|x)), the cost of the
    approximate posterior), "test_exact_iw_gap": that minus
    test_log_likelihood}, nats per example.
  """
  if getattr(splits, "exact_log_likelihood", None) is None:
    return {}
  exact = float(np.mean(splits.exact_log_likelihood(splits.test.x)))
  return {
      "test_exact_log_likelihood": exact,
      "test_exact_gap": exact - float(metrics["test_elbo"]),
      "test_exact_iw_gap": exact - float(metrics["test_log_likelihood"]),
  }
