"""What the hand-written steps train: shapes, recipe, weights.

No vib_flows code (and no TensorFlow or JAX): a `Spec` of plain numbers and
the initial weights as NumPy arrays, read by both hand-written steps
(`handwritten_tf`, `handwritten_jax`), so that the two start from the same
weights, and what both frameworks' steps share (the constants below,
`finite_loss`). `from_config` reads a Spec off a package config (the same
model and recipe): the no-flow VAE and VIB of the `hand` cases
(`runs`) and the MNIST-scale ones (`mnist`, which also copies the package
model's weights into the same layout for the tests).

The model (Kingma & Welling 2014; Rezende & Mohamed 2015; van den Berg et al.
2018; Alemi et al. 2017), for x [B, D]:

    h = relu MLP of x (2x - 1 when centered_inputs)
    loc = h Wl + bl,  scale = softplus(h Ws + bs + scale_shift) + min_scale
    z0 = loc + scale * eps,   eps ~ N(0, I)
    amortized flows (context_dim C > 0): c = relu(h Wc + bc), every flow
        parameter p [B, *shape] = reshape(c Kp, [B, *shape]) + bp
    zK, log|det| = planar or orthogonal Sylvester flows of z0
    VAE: -log p(x|zK) Bernoulli logits of the relu MLP decoder of zK
    VIB: -log p(y|zK) softmax logits of the classifier MLP of zK
    KL = log q0(z0|x) - log|det| - log N(zK; 0, I)  (flows), or closed form
    loss = mean_b [nll + beta_t KL],  beta_t = beta min(1, t / warmup_steps)

Optimizer: Adam (beta_1, beta_2 = 0.999, eps = 1e-7, Keras' defaults) at
the staircase rate lr decay_rate^floor(t / decay_steps) (t counted from 0),
and with ema_decay > 0 the moving average a <- d a + (1 - d) w after each
step (a = w after the first), as Keras' `use_ema`.

Weights (`init_params`, names -> arrays; the order is the update order):
  enc{i}/kernel [n, m], enc{i}/bias [m]      encoder hidden layers
  loc/*, scale/*                             the posterior's heads
  context/*                                  amortized flows only
  planar (one layer of K maps): flow/u, flow/w [K, d], flow/b [K, 1] and
    flow/u_kernel, flow/w_kernel [C, K d], flow/b_kernel [C, K]
  Sylvester flow f: flow{f}/q [d, M], flow{f}/r, flow{f}/r_tilde [T],
    flow{f}/b [M] (T = M (M + 1) / 2) and their {name}_kernel [C, size]
  gen{i}/kernel, gen{i}/bias                 decoder / classifier hidden
  out/kernel, out/bias                       logits
Dense kernels are Glorot-uniform, biases zero (Keras' defaults); flow
parameters as the papers' usual choices: planar u, w ~ N(0, 0.1^2), b = 0;
Sylvester q ~ N(0, 1), r, r_tilde ~ N(0, 0.1^2), b = 0; amortizing kernels
~ N(0, (0.01 / sqrt(C))^2).
"""

import dataclasses
import math

import numpy as np

FLOWS = ("", "planar", "sylvester_orthogonal")
# Diagonal bound of the Sylvester R, R~: r_mm = c tanh(raw) keeps
# 1 + r_mm r~_mm h' > 0 (van den Berg et al. 2018 use tanh alone).
DIAGONAL_BOUND = 0.9995
# Adam's beta_2 and epsilon (Keras' defaults; beta_1 is the Spec's).
ADAM_BETA_2 = 0.999
ADAM_EPSILON = 1e-7
# log N(z; 0, 1) = -z^2 / 2 - HALF_LOG_2PI.
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclasses.dataclass(frozen=True)
class Spec:
  """Shapes and training recipe of one hand-written model.

  Attributes:
    kind: "vae" (Bernoulli decoder of x) or "vib" (classifier of y).
    input_dim: D.
    encoder_hidden: widths of the encoder's hidden layers.
    latent_dim: d.
    decoder_hidden: widths of the decoder's (classifier's) hidden layers.
    num_classes: VIB classes.
    flow: "" (none), "planar" or "sylvester_orthogonal".
    num_flows: planar maps K, or Sylvester layers.
    num_ortho_vectors: Sylvester M (0: d).
    context_dim: C of the amortized flows (flows are always amortized here).
    scale_shift, min_scale, centered_inputs: the posterior's scale and input.
    beta, warmup_steps: KL weight and its linear warm-up (0: none).
    learning_rate, beta_1, decay_rate, decay_steps: Adam and its staircase
      decay (decay_steps 0: constant).
    ema_decay: weight averaging (0: off).
  """

  kind: str
  input_dim: int
  encoder_hidden: tuple[int, ...]
  latent_dim: int
  decoder_hidden: tuple[int, ...]
  num_classes: int = 10
  flow: str = ""
  num_flows: int = 0
  num_ortho_vectors: int = 0
  context_dim: int = 0
  scale_shift: float = 0.0
  min_scale: float = 1e-4
  centered_inputs: bool = False
  beta: float = 1.0
  warmup_steps: int = 0
  learning_rate: float = 1e-3
  beta_1: float = 0.9
  decay_rate: float = 1.0
  decay_steps: int = 0
  ema_decay: float = 0.0

  def __post_init__(self):
    """Refuses an unknown kind or flow, and global flows."""
    if self.kind not in ("vae", "vib"):
      raise ValueError(f"kind must be vae or vib, got {self.kind!r}.")
    if self.flow not in FLOWS:
      raise ValueError(f"flow must be one of {FLOWS}, got {self.flow!r}.")
    if self.has_flows and self.context_dim < 1:
      raise ValueError("The hand-written flows are amortized: context_dim "
                       "must be >= 1.")

  @property
  def has_flows(self):
    return bool(self.flow) and self.num_flows > 0

  @property
  def m(self):
    """Sylvester M."""
    return self.num_ortho_vectors or self.latent_dim

  @property
  def output_dim(self):
    return self.input_dim if self.kind == "vae" else self.num_classes

  def flow_parameter_shapes(self):
    """[(name, shape)] of the amortized flow parameters, in order.

    Each is computed per example, [B, *shape], by the steps' flows.
    """
    d, k, m = self.latent_dim, self.num_flows, self.m
    if not self.has_flows:
      return []
    if self.flow == "planar":
      return [("flow/u", (k, d)), ("flow/w", (k, d)), ("flow/b", (k, 1))]
    t = m * (m + 1) // 2  # Entries of an M x M upper triangle.
    out = []
    for f in range(k):
      out += [(f"flow{f}/q", (d, m)), (f"flow{f}/r", (t,)),
              (f"flow{f}/r_tilde", (t,)), (f"flow{f}/b", (m,))]
    return out

  def dense_layers(self):
    """[(name, n_in, n_out)] of every dense matmul of the step, in order.

    The amortizing products c K_p count as dense layers (n_in = C).
    """
    layers = []
    widths = [self.input_dim, *self.encoder_hidden]
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
      layers.append((f"enc{i}", a, b))
    h = widths[-1]
    layers += [("loc", h, self.latent_dim), ("scale", h, self.latent_dim)]
    if self.has_flows:
      layers.append(("context", h, self.context_dim))
      for name, shape in self.flow_parameter_shapes():
        layers.append((f"{name}_kernel", self.context_dim,
                       int(np.prod(shape))))
    widths = [self.latent_dim, *self.decoder_hidden]
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
      layers.append((f"gen{i}", a, b))
    layers.append(("out", widths[-1], self.output_dim))
    return layers


def from_config(config, input_dim, num_classes, train_examples):
  """The `Spec` of a package config (the same model and recipe).

  Args:
    config: the case's config (ml_collections, as configs/*.py).
    input_dim: D of the case's data.
    num_classes: VIB classes.
    train_examples: training examples (an epoch's steps for the staircase
      decay of optimizer.decay_every_epochs).

  Raises:
    ValueError: a config the hand-written steps do not cover.
  """
  m, f, o = config.model, config.flow, config.optimizer
  unsupported = {
      "model.activation": (m.activation, "relu"),
      "model.prior": (m.prior, "standard_normal"),
      "model.network": (m.get("network", "mlp"), "mlp"),
      "optimizer.name": (o.name, "adam"),
      "loss.num_samples": (config.loss.num_samples, 1),
      "loss.estimator": (config.loss.estimator, "pathwise"),
      "optimizer.clipnorm": (o.clipnorm, 0.0),
  }
  for field, (value, needed) in unsupported.items():
    if value != needed:
      raise ValueError(f"The hand-written steps need {field}={needed!r}, "
                       f"got {value!r}.")
  num_flows = int(f.num_flows)
  if num_flows and not f.amortized:
    raise ValueError("The hand-written flows are amortized.")
  steps_per_epoch = max(int(train_examples) // int(config.train.batch_size),
                        1)
  return Spec(
      kind=str(m.kind), input_dim=int(input_dim),
      encoder_hidden=tuple(int(w) for w in m.encoder_hidden),
      latent_dim=int(m.latent_dim),
      decoder_hidden=tuple(int(w) for w in m.decoder_hidden),
      num_classes=int(num_classes), flow=str(f.name) if num_flows else "",
      num_flows=num_flows, num_ortho_vectors=int(f.num_ortho_vectors),
      context_dim=int(m.context_dim) if num_flows else 0,
      scale_shift=float(m.scale_shift), min_scale=float(m.min_scale),
      centered_inputs=bool(m.centered_inputs), beta=float(config.loss.beta),
      warmup_steps=int(config.loss.warmup_steps),
      learning_rate=float(o.learning_rate), beta_1=float(o.beta_1),
      decay_rate=float(o.decay_rate),
      decay_steps=int(o.decay_every_epochs) * steps_per_epoch,
      ema_decay=float(config.train.ema_decay))


def _glorot(rng, fan_in, fan_out):
  limit = np.sqrt(6.0 / (fan_in + fan_out))
  return rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)


def init_params(spec, seed=0):
  """{name: float32 array} of the initial weights (module docstring)."""
  rng = np.random.default_rng(seed)
  params = {}
  flow_kernels = {f"{n}_kernel" for n, _ in spec.flow_parameter_shapes()}
  for name, n_in, n_out in spec.dense_layers():
    if name in flow_kernels:
      continue
    params[f"{name}/kernel"] = _glorot(rng, n_in, n_out)
    params[f"{name}/bias"] = np.zeros([n_out], np.float32)
  c = spec.context_dim
  for name, shape in spec.flow_parameter_shapes():
    short = name.split("/")[-1]
    if short == "b":
      value = np.zeros(shape, np.float32)
    elif short == "q":
      value = rng.normal(0.0, 1.0, shape).astype(np.float32)
    else:
      value = rng.normal(0.0, 0.1, shape).astype(np.float32)
    params[name] = value
    params[f"{name}_kernel"] = rng.normal(
        0.0, 0.01 / np.sqrt(c), (c, int(np.prod(shape)))).astype(np.float32)
  return params


def noise(spec, batch_size, step, seed=0):
  """A reproducible eps [B, d] (NumPy), for checks outside the steps."""
  rng = np.random.default_rng([seed, step])
  return rng.standard_normal((batch_size, spec.latent_dim)).astype(np.float32)


def finite_loss(name, loss):
  """float(loss) of runner `name`'s step; FloatingPointError if not finite."""
  loss = float(loss)
  if not np.isfinite(loss):
    raise FloatingPointError(f"{name}: non-finite loss {loss}")
  return loss
