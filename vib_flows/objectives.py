"""Objectives of the VAE and the VIB.

The VAE negative ELBO, the VIB loss, KL terms, IWAE, gradient estimators.

All per-example quantities are float32 tensors [B] in nats; per-sample ones are
[S, B] (S posterior samples per example, sample axis first).

VAE (Kingma & Welling 2014; with flows Rezende & Mohamed 2015, van den Berg et
al. 2018), for zK = f_K o ... o f_1(z0), z0 ~ q0(z0|x):

    log qK(zK|x) = log q0(z0|x) - sum_k log|det J_k|
    ELBO(x) = E_q[log p(x|zK)] - E_q[log qK(zK|x) - log p(zK)]
    loss    = E_q[-log p(x|zK)] + beta * KL,

VIB (Alemi et al. 2017, "Deep Variational Information Bottleneck"):

    loss = E_q[-log p(y|zK)] + beta * KL,
    I(Z;X) <= E_x[KL],   I(Z;Y) >= H(Y) - E[cross-entropy].

KL: closed form (`distributions.kl_diagonal_gaussians`) for a Gaussian
posterior without flow and a standard-normal prior, else the Monte Carlo
estimate mean_s [log qK(zK_s|x) - log p(zK_s)].

KL warm-up (Rezende & Mohamed 2015 Sec. 6; van den Berg et al. 2018 Sec. 5):
beta rises linearly from 0 to its final value over `warmup_steps`.

Importance-weighted bound (Burda et al. 2016, "Importance Weighted
Autoencoders"): with log w_k = log p(x|zK_k) + log p(zK_k) - log qK(zK_k|x),

    log p(x) >= L_K = log (1/K) sum_k w_k,   L_1 = ELBO <= L_K -> log p(x),

computed chunk by chunk with a running logsumexp so memory does not grow with K.

Gradient estimators of grad_phi E_{q_phi(z)}[f_phi(z)]:

  pathwise (reparameterization; Kingma & Welling 2014): z = g_phi(eps),
      grad = E_eps[grad_phi f_phi(g_phi(eps))]; surrogate = mean_s f(z_s).
  score function (REINFORCE; Williams 1992), with baseline b:
      grad = E_q[grad_phi f_phi(z) + (f_phi(z) - b) grad_phi log q_phi(z)],
      surrogate = mean_s [f(sg(z_s)) + sg(f(sg(z_s)) - b) log q_phi(sg(z_s))],
  with sg = stop_gradient. Any b independent of z keeps it unbiased, since
  E_q[grad log q] = 0; a moving average of f lowers the variance.
"""

from collections.abc import Callable
from typing import TypeAlias

import numpy as np
import tensorflow as tf

ESTIMATORS = ("pathwise", "score_function")
# A Python number or a scalar tensor.
Scalar: TypeAlias = float | tf.Tensor


def beta_schedule(step: int | tf.Tensor, beta: Scalar,
                  warmup_steps: int | tf.Tensor) -> tf.Tensor:
  """KL weight at `step`: linear from 0 at step 0 to `beta` at `warmup_steps`.

      beta_t = beta * min(1, step / warmup_steps)    (warmup_steps > 0)
      beta_t = beta                                   (warmup_steps <= 0)

  Args:
    step: scalar int/float (tensor), the optimizer step.
    beta: final KL weight.
    warmup_steps: steps of the linear rise (0: no warm-up).

  Returns:
    float32 scalar tensor.
  """
  step = tf.cast(step, tf.float32)
  beta = tf.cast(beta, tf.float32)
  warmup = tf.cast(warmup_steps, tf.float32)
  ramp = tf.minimum(1.0, step / tf.maximum(warmup, 1.0))
  return tf.where(warmup > 0, beta * ramp, beta)


def chunked_log_weight_stats(
    log_weight_fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
    num_samples: int | tf.Tensor, chunk_size: int | tf.Tensor,
    batch_size: int | tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """mean_k log w_k and logmeanexp_k log w_k over K samples, chunk by chunk.

  A `tf.while_loop` over ceil(K / c) chunks keeps the running sum and the
  running logsumexp (logsumexp(a, b) over chunks), so memory is that of one
  chunk.

  Args:
    log_weight_fn: `(chunk_index, n) -> [n, B]` float32 log-weights of the n
      samples of chunk `chunk_index` (int32 scalar tensors).
    num_samples: K.
    chunk_size: c, samples per chunk (the last chunk may be smaller).
    batch_size: B (int or scalar tensor).

  Returns:
    (elbo [B] = mean_k log w_k, iw [B] = logmeanexp_k log w_k).
  """
  k = tf.cast(num_samples, tf.int32)
  c = tf.maximum(1, tf.minimum(tf.cast(chunk_size, tf.int32), k))
  num_chunks = (k + c - 1) // c
  # Running max m and sum s = sum_k exp(log w_k - m), and the sum of
  # deviations from a shift (the first chunk's mean): float32 rounding then
  # scales with the spread of the log-weights, not with their magnitude
  # (hundreds of nats), however many chunks there are.
  m0 = tf.fill([batch_size], tf.constant(-np.inf, tf.float32))
  s0 = tf.zeros([batch_size], tf.float32)
  shift0 = tf.zeros([batch_size], tf.float32)
  dev0 = tf.zeros([batch_size], tf.float32)

  def body(i, m, s, shift, dev):
    n = tf.minimum(c, k - i * c)
    log_w = tf.cast(log_weight_fn(i, n), tf.float32)
    m_new = tf.maximum(m, tf.reduce_max(log_w, axis=0))
    safe = tf.where(tf.math.is_finite(m_new), m_new, tf.zeros_like(m_new))
    s = s * tf.exp(m - safe) + tf.reduce_sum(tf.exp(log_w - safe), axis=0)
    shift = tf.where(i == 0, tf.reduce_mean(log_w, axis=0), shift)
    dev = dev + tf.reduce_sum(log_w - shift, axis=0)
    return i + 1, m_new, s, shift, dev

  # parallel_iterations=2: chunks depend only on their index, so by default up
  # to 10 would be alive at once and memory would grow with K. Two in flight
  # keep memory bounded (two chunks, whatever K) and let both cores work when
  # each op runs on one thread (runtime.intra_op_threads = 1); the
  # measurements are in docs/performance.md. The sums are still taken in
  # chunk order: the result is the same, bit for bit.
  _, m, s, shift, dev = tf.while_loop(
      lambda i, *_: i < num_chunks, body,
      (tf.constant(0), m0, s0, shift0, dev0), parallel_iterations=2)
  kf = tf.cast(k, tf.float32)
  safe = tf.where(tf.math.is_finite(m), m, tf.zeros_like(m))
  return shift + dev / kf, safe + tf.math.log(s) - tf.math.log(kf)


def flow_log_prob(log_q0: tf.Tensor, log_det: tf.Tensor) -> tf.Tensor:
  """The flow posterior's log-density: [S, B], [S, B] -> [S, B].

      log qK(zK|x) = log q0(z0|x) - sum_k log|det J_k|

  The change of variables through the flow (Rezende & Mohamed 2015, Sec. 3.1).
  """
  return log_q0 - log_det


def log_density_ratio(log_q: tf.Tensor, log_p: tf.Tensor) -> tf.Tensor:
  """Per-sample KL terms log q(z_s) - log p(z_s): [S, B] -> [S, B] float32.

  The sampled cost of the KL that the score-function estimator weights.
  """
  return tf.cast(log_q, tf.float32) - tf.cast(log_p, tf.float32)


def monte_carlo_kl(log_q: tf.Tensor, log_p: tf.Tensor,
                   axis: int = 0) -> tf.Tensor:
  """mean_s [log q(z_s) - log p(z_s)]: [S, B] -> [B] float32.

  An unbiased estimate of KL(q || p) from samples z_s ~ q.
  """
  return tf.reduce_mean(log_density_ratio(log_q, log_p), axis=axis)


def log_importance_weights(log_px: tf.Tensor, log_pz: tf.Tensor,
                           log_q0: tf.Tensor, log_det: tf.Tensor) -> tf.Tensor:
  """Importance log-weights of the IWAE bound: [K, B] each -> [K, B].

      log w = log p(x|zK) + log p(zK) - log qK(zK|x)

  With log qK = log q0(z0|x) - sum_k log|det J_k| (`flow_log_prob`) written
  out: log w = log p(x|zK) + log p(zK) - log q0(z0|x) + sum_k log|det J_k|.
  """
  return log_px + log_pz - log_q0 + log_det


def negative_elbo(log_likelihood: tf.Tensor, kl: tf.Tensor,
                  beta: Scalar = 1.0) -> tf.Tensor:
  """VAE loss E_q[-log p(x|z)] + beta KL: [B], [B] -> [B]."""
  return -log_likelihood + tf.cast(beta, tf.float32) * kl


def vib_loss(cross_entropy: tf.Tensor, kl: tf.Tensor,
             beta: Scalar) -> tf.Tensor:
  """VIB loss E_q[-log p(y|z)] + beta KL (Alemi et al. 2017, Eq. 7): [B]."""
  return cross_entropy + tf.cast(beta, tf.float32) * kl


def pathwise_surrogate(cost: tf.Tensor, axis: int = 0) -> tf.Tensor:
  """Pathwise (reparameterization) surrogate: mean_s cost_s, [S, B] -> [B].

  `cost` must be computed from reparameterized samples z = g_phi(eps).
  """
  return tf.reduce_mean(cost, axis=axis)


def score_function_surrogate(cost: tf.Tensor, log_q: tf.Tensor,
                             baseline: Scalar = 0.0,
                             axis: int = 0) -> tf.Tensor:
  """REINFORCE surrogate with a baseline: [S, B] -> [B].

      surrogate = mean_s [cost_s + sg(cost_s - b) * log q(sg(z_s))]

  Its value is not the objective (the second term has zero mean only in
  expectation over gradients); its gradient is the score-function estimator.

  Args:
    cost: [S, B] f(z_s), computed from stop-gradient samples z_s (it may still
      depend on the parameters explicitly, e.g. through log q).
    log_q: [S, B] log q_phi(z_s) at the stop-gradient samples.
    baseline: scalar (or broadcastable) control variate b, independent of z_s.
    axis: sample axis.

  Returns:
    [B] surrogate.
  """
  advantage = tf.stop_gradient(cost - tf.cast(baseline, cost.dtype))
  return tf.reduce_mean(cost + advantage * tf.cast(log_q, cost.dtype),
                        axis=axis)


def moving_average(old: Scalar, value: Scalar, decay: float) -> Scalar:
  """Decay * old + (1 - decay) * value (the score-function baseline update)."""
  return decay * old + (1.0 - decay) * value


def label_entropy(y: tf.Tensor | np.ndarray, num_classes: int) -> tf.Tensor:
  """Empirical H(Y) in nats from integer labels y [N] (for the I(Z;Y) bound)."""
  counts = tf.math.bincount(tf.cast(y, tf.int32), minlength=num_classes,
                            maxlength=num_classes, dtype=tf.float32)
  p = counts / tf.reduce_sum(counts)
  return -tf.reduce_sum(tf.where(p > 0, p * tf.math.log(
      tf.where(p > 0, p, 1.0)), 0.0))


def information_bounds(kl: Scalar | None, cross_entropy: Scalar,
                       h_y: Scalar) -> dict[str, Scalar]:
  """VIB information bounds in nats (Alemi et al. 2017, Sec. 2-3).

  Args:
    kl: mean over examples of KL(q(z|x) || p(z)) (or its MC estimate); None
      for a deterministic encoder, whose I(Z;X) has no such bound.
    cross_entropy: mean over examples of E_q[-log p(y|z)].
    h_y: H(Y) in nats (`label_entropy`, or log(num_classes) if balanced).

  Returns:
    dict(izx_upper = E[KL] >= I(Z;X) (left out when kl is None),
    izy_lower = H(Y) - CE <= I(Z;Y)).
  """
  bounds = {"izy_lower": h_y - cross_entropy}
  if kl is not None:
    bounds["izx_upper"] = kl
  return bounds

