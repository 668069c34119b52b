"""Robustness of a classifier to gradient-sign attacks: FGSM and PGD.

FGSM (Goodfellow et al. 2015, "Explaining and Harnessing Adversarial
Examples") moves every input value by epsilon in the direction that raises
the loss to first order:

    x_adv = clip(x + epsilon * sign(grad_x L(x, y)), 0, 1),
    L(x, y) = -log p(y|x),   p(y|x) ~= (1/S) sum_s p(y|zK_s)  (the VIB).

It is an untargeted attack with an L-infinity budget epsilon; Alemi et al.
2017 ("Deep Variational Information Bottleneck", Sec. 4.2) report the test
accuracy on such examples for several epsilons, the VIB against a
deterministic network.

One step trusts the loss to be linear within the budget. Where it is not (a
curved loss surface, saturated units), FGSM finds few adversarial examples
although they exist, and the model looks more robust than it is: gradient
masking (Athalye, Carlini & Wagner 2018, "Obfuscated Gradients Give a False
Sense of Security"). Projected gradient descent (`pgd`; Kurakin et al. 2017's
basic iterative method, Madry et al. 2018) takes several smaller signed
steps, each projected back into the budget:

    x_{t+1} = clip(clip(x_t + a sign(grad_x L(x_t, y)), x - eps, x + eps),
                   0, 1),   x_0 = x,

and finds them; an accuracy far above PGD's under FGSM is the sign of
masking. Started at x, PGD follows one path; Madry et al. 2018 also start it
at random points of the budget, x_0 = x + U(-eps, eps), and count an example
as robust only if no start fools it (`robust_accuracy(..., restarts=R)`),
which finds adversarial examples a flat or locally misleading loss at x
hides. Both ascend the cross-entropy L by default. Where a model is so
confident that p(y|x) rounds to 1 in float32, that loss has no gradient at
all (every other class's softmax underflows to 0), and no number of steps
moves x. The margin loss (`loss="margin"`; Carlini & Wagner 2017),

    L_margin(x, y) = (1/S) sum_s [max_{j != y} z_sj(x) - z_sy(x)],

the logit gap averaged over the posterior samples (an expectation over the
model's randomness, Athalye et al. 2018), keeps its gradient there; it needs
the model's logits, `predict_logits(x, num_samples, seed, example_index)
-> [S, B, C]`. The predictive p(y|x) is the model's
`predict_proba(x, num_samples, seed, example_index)` (`models.VIB`): with a
fixed seed and example indices the posterior samples are fixed, so L is a
deterministic function of x and so is its gradient. Inputs are grey values in
[0, 1] (the data range the perturbed x is clipped to).
"""

from collections.abc import Iterable
from typing import Any
import weakref

import numpy as np
import tensorflow as tf

from vib_flows import indexed_noise

# Keeps p(y|x) > 0 inside the log: -log(p + TINY) has the sign of the
# gradient of -log p (d/dx log(p + c) = (dp/dx) / (p + c), c >= 0) and no
# infinite gradient where p underflows to 0.
_TINY = np.finfo(np.float32).tiny
_ATTACKS: Any = weakref.WeakKeyDictionary()
# The losses the attacks ascend (module docstring).
LOSSES = ("cross_entropy", "margin")


def fgsm(model: Any, x: tf.Tensor, y: tf.Tensor, epsilon: float | tf.Tensor,
         seed: tf.Tensor, num_samples: int | tf.Tensor,
         example_index: tf.Tensor | None = None,
         clip: tuple[float, float] | None = (0.0, 1.0),
         loss: str = "cross_entropy") -> tf.Tensor:
  """Untargeted FGSM examples: x + epsilon * sign(grad_x -log p(y|x)).

  Args:
    model: a classifier with `predict_proba(x, num_samples, seed,
      example_index=...) -> [B, C]` (a `models.VIB`).
    x: [B, *data_shape] inputs in [0, 1].
    y: [B] integer labels (the attack lowers their probability).
    epsilon: scalar L-infinity budget (in data units).
    seed: int tensor [2] of the posterior samples; with `example_index`, the
      samples of the gradient are those `predict_proba` draws with the same
      arguments.
    num_samples: S, posterior samples averaged in p(y|x).
    example_index: optional [B] integer indices of the examples (see
      `predict_proba`).
    clip: the data range (low, high) x_adv is clipped to; None: no clipping.
    loss: the loss ascended, one of `LOSSES`: "cross_entropy", -log p(y|x),
      or "margin" (module docstring; the model needs `predict_logits`).

  Returns:
    x_adv [B, *data_shape] float32. The examples are independent: the loss is
    summed over the batch, so each example's gradient is its own.
  """
  x = tf.convert_to_tensor(x, tf.float32)
  grad = _loss_gradient(model, x, tf.cast(y, tf.int32), seed, num_samples,
                        example_index, loss)
  x_adv = x + tf.cast(epsilon, tf.float32) * tf.sign(grad)
  if clip is not None:
    x_adv = tf.clip_by_value(x_adv, clip[0], clip[1])
  return x_adv


def pgd(model: Any, x: tf.Tensor, y: tf.Tensor, epsilon: float | tf.Tensor,
        seed: tf.Tensor, num_samples: int | tf.Tensor, steps: int = 20,
        step_size: float | tf.Tensor | None = None,
        example_index: tf.Tensor | None = None,
        clip: tuple[float, float] | None = (0.0, 1.0),
        loss: str = "cross_entropy",
        start_seed: tf.Tensor | None = None) -> tf.Tensor:
  """Untargeted L-infinity PGD examples (module docstring).

  Args:
    model: see `fgsm`.
    x: [B, *data_shape] inputs in [0, 1].
    y: [B] integer labels.
    epsilon: scalar L-infinity budget (in data units).
    seed: int tensor [2] of the posterior samples, the same at every step.
    num_samples: S, posterior samples averaged in p(y|x).
    steps: the number of signed steps T >= 1.
    step_size: a, the size of each step; default 2.5 epsilon / T (Madry et
      al. 2018), so that the steps can cross the budget and come back. With
      T = 1 and a = epsilon, PGD is `fgsm`.
    example_index: optional [B] integer indices of the examples.
    clip: the data range (low, high); None: no clipping.
    loss: the loss ascended (see `fgsm`).
    start_seed: None: start at x_0 = x. An int tensor [2]: start at a
      uniform point of the budget, x_0 = x + U(-epsilon, epsilon) within
      `clip` (Madry et al. 2018), drawn with this seed; with
      `example_index` each example's start depends only on (start_seed,
      its index), not on its batch-mates (`random_start`).

  Returns:
    x_adv [B, *data_shape] float32, |x_adv - x| <= epsilon everywhere and
    within `clip`.
  """
  if int(steps) < 1:
    raise ValueError(f"PGD needs steps >= 1, got {steps}.")
  x = tf.convert_to_tensor(x, tf.float32)
  y = tf.cast(y, tf.int32)
  epsilon = tf.cast(epsilon, tf.float32)
  if step_size is None:
    step_size = 2.5 * epsilon / float(steps)
  step_size = tf.cast(step_size, tf.float32)
  low, high = x - epsilon, x + epsilon
  if clip is not None:
    low = tf.maximum(low, clip[0])
    high = tf.minimum(high, clip[1])

  def step(t, x_t):
    grad = _loss_gradient(model, x_t, y, seed, num_samples, example_index,
                          loss)
    return t + 1, tf.clip_by_value(x_t + step_size * tf.sign(grad), low, high)

  x_0 = x
  if start_seed is not None:
    x_0 = tf.clip_by_value(
        x + epsilon * (2.0 * random_start(x, start_seed, example_index) - 1.0),
        low, high)
  _, x_adv = tf.while_loop(lambda t, _: t < int(steps), step,
                           (tf.constant(0), x_0))
  return x_adv


def random_start(x: tf.Tensor, seed: tf.Tensor,
                 example_index: tf.Tensor | None = None) -> tf.Tensor:
  """U(0, 1) noise of x's shape [B, *data_shape] for PGD's random starts.

  With `example_index`, example b's noise is Phi(eps_b), eps_b the standard
  normals of `indexed_noise.normal(seed, example_index)` (Phi: the normal
  CDF, which makes them uniform), a function of (seed, its index) alone;
  without, one `tf.random.stateless_uniform` draw of the batch.
  """
  if example_index is None:
    return tf.random.stateless_uniform(tf.shape(x), seed)
  size = int(np.prod(x.shape[1:]))
  eps = indexed_noise.normal(seed, example_index, tf.zeros([1], tf.int32),
                             size)[0]  # [B, size]
  return tf.reshape(0.5 * (1.0 + tf.math.erf(eps / np.sqrt(2.0))),
                    tf.shape(x))


def _check_loss(loss: str) -> None:
  if loss not in LOSSES:
    raise ValueError(f"Unknown attack loss {loss!r}; known: "
                     f"{', '.join(LOSSES)}.")


def _loss_gradient(model: Any, x: tf.Tensor, y: tf.Tensor, seed: tf.Tensor,
                   num_samples: int | tf.Tensor,
                   example_index: tf.Tensor | None,
                   loss: str = "cross_entropy") -> tf.Tensor:
  """grad_x of sum_b L(x_b, y_b), [B, *data_shape] (L: `loss`)."""
  _check_loss(loss)
  with tf.GradientTape() as tape:
    tape.watch(x)
    if loss == "margin":
      logits = model.predict_logits(x, num_samples, seed,
                                    example_index=example_index)  # [S, B, C]
      is_y = tf.one_hot(y, tf.shape(logits)[-1], on_value=True,
                        off_value=False)  # [B, C]
      z_y = tf.reduce_sum(tf.where(is_y, logits, 0.0), axis=-1)  # [S, B]
      z_other = tf.reduce_max(
          tf.where(is_y, tf.constant(-np.inf, tf.float32), logits), axis=-1)
      total = tf.reduce_sum(tf.reduce_mean(z_other - z_y, axis=0))
    else:
      probs = model.predict_proba(x, num_samples, seed,
                                  example_index=example_index)
      p_y = tf.gather(probs, y, axis=-1, batch_dims=1)  # [B]
      total = -tf.reduce_sum(tf.math.log(p_y + _TINY))
  return tape.gradient(total, x)


def _attack_fn(model: Any, num_samples: int, pgd_steps: int = 0,
               loss: str = "cross_entropy", random: bool = False) -> Any:
  """tf.function (x, y, index, epsilon, seed, start_seed) -> [B] correct.

  Whether each x_adv is still classified as y: FGSM, or PGD of `pgd_steps`
  steps when > 0, ascending `loss`, started at x or (`random`) at a random
  point of the budget drawn with start_seed. Made once per (model,
  num_samples, pgd_steps, loss, random); epsilon and the seeds are tensor
  arguments, so one trace serves every epsilon and restart. It holds the
  model through a weak reference.
  """
  per_model = _ATTACKS.setdefault(model, {})
  key = (num_samples, pgd_steps, loss, random)
  if key not in per_model:
    model_ref = weakref.ref(model)

    @tf.function(reduce_retracing=True, autograph=False)
    def correct(x, y, index, epsilon, seed, start_seed):
      classifier = model_ref()
      if classifier is None:  # Only when traced after the model is gone.
        raise ReferenceError("The attacked model no longer exists.")
      if pgd_steps:
        x_adv = pgd(classifier, x, y, epsilon, seed, num_samples,
                    steps=pgd_steps, example_index=index, loss=loss,
                    start_seed=start_seed if random else None)
      else:
        x_adv = fgsm(classifier, x, y, epsilon, seed, num_samples,
                     example_index=index, loss=loss)
      probs = classifier.predict_proba(x_adv, num_samples, seed,
                                       example_index=index)
      return tf.argmax(probs, -1, output_type=tf.int32) == y

    per_model[key] = correct
  return per_model[key]


def robust_accuracy(model: Any, split: Any, epsilons: Iterable[float],
                    num_samples: int, seed: tf.Tensor,
                    batch_size: int = 500,
                    pgd_steps: int = 0,
                    loss: str = "cross_entropy",
                    restarts: int = 1) -> dict[float, float]:
  """Accuracy on FGSM (or PGD) examples of every example of a split.

  Example n of the split has example index n (its position), as in
  `evaluate.batches`, so with the seed of the clean test accuracy epsilon 0
  reproduces it: the same code path then leaves x unchanged.

  Args:
    model: see `fgsm`.
    split: object with `x` [N, *data_shape] in [0, 1] and `y` [N] labels
      (a `data.Split`).
    epsilons: the budgets, each in [0, 1].
    num_samples: S of `fgsm` and of the prediction on x_adv.
    seed: int tensor [2].
    batch_size: examples per call.
    pgd_steps: 0: FGSM; T > 0: `pgd` with T steps of 2.5 epsilon / T.
    loss: the loss the attack ascends, one of `LOSSES` (see `fgsm`).
    restarts: PGD only: R >= 1 attacks of each example, the first from x,
      restart r >= 1 from a random point of the budget (`pgd`'s start_seed
      = `tf.random.experimental.stateless_fold_in(seed, r)`); an example is
      correct only if it is correct after every one (Madry et al. 2018).

  Returns:
    {epsilon: the fraction of examples whose argmax_y p(y|x_adv) is y}.
  """
  if split.y is None:
    raise ValueError("The FGSM accuracy needs labels: the split has none.")
  if int(pgd_steps) < 0:
    raise ValueError(f"pgd_steps must be >= 0 (0: FGSM), got {pgd_steps}.")
  if int(restarts) < 1 or (int(restarts) > 1 and not int(pgd_steps)):
    raise ValueError(
        f"restarts must be >= 1, and above 1 only for PGD (pgd_steps > 0); "
        f"got restarts={restarts}, pgd_steps={pgd_steps}.")
  _check_loss(loss)
  from_x = _attack_fn(model, int(num_samples), int(pgd_steps), loss)
  from_random = _attack_fn(model, int(num_samples), int(pgd_steps), loss,
                           random=True)
  seed = tf.convert_to_tensor(seed)
  start_seeds = [tf.random.experimental.stateless_fold_in(seed, r)
                 for r in range(int(restarts))]
  n = int(np.shape(split.x)[0])
  result = {}
  for epsilon in epsilons:
    correct = 0
    for start in range(0, n, batch_size):
      stop = min(start + batch_size, n)
      args = (tf.constant(split.x[start:stop], tf.float32),
              tf.constant(split.y[start:stop], tf.int32),
              tf.range(start, stop), tf.constant(epsilon, tf.float32), seed)
      still = from_x(*args, start_seeds[0]).numpy()
      for start_seed in start_seeds[1:]:
        still &= from_random(*args, start_seed).numpy()
      correct += int(still.sum())
    result[float(epsilon)] = correct / n
  return result
