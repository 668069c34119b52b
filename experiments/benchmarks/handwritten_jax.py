"""The MNIST-scale models as a hand-written JAX training step.

No vib_flows code and no optax: the model, flows and recipe of a
`handwritten_spec.Spec` in plain `jax.numpy`, the gradient by `jax.grad`,
Adam, its staircase rate and the weight average written out, the whole step
one `jax.jit` function whose state buffers are donated (updated in place,
as TensorFlow's variables are). The maths are `handwritten_tf`'s (its
docstring), except that the Sylvester layers' Q come from one batched QR
of all layers' raw matrices (jaxlib 0.10's CPU QR deadlocks when two run at
once on 2 cores; `sylvester_flows`); the noise is JAX's own
(`jax.random.fold_in(key, t)`).

`available()` says whether JAX imports; the benchmark skips the JAX rows
with a message where it does not (`pip install "jax[cpu]"`).
"""

import numpy as np

from experiments.benchmarks import handwritten_spec


def available():
  """(True, "") when JAX imports, else (False, why)."""
  try:
    import jax  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError as error:
    return False, f"JAX is not installed ({error}): pip install 'jax[cpu]'"
  return True, ""


def _jnp():
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  return jnp


def _dense(p, name, h):
  return h @ p[f"{name}/kernel"] + p[f"{name}/bias"]


def flow_parameters(p, spec, context):
  """{name: [B, *shape]}: each amortized flow parameter, the bias plus c K.

  Names and shapes: `Spec.flow_parameter_shapes`.
  """
  return {name: (context @ p[f"{name}_kernel"]).reshape((-1, *shape))
                + p[name]
          for name, shape in spec.flow_parameter_shapes()}


def upper_triangular(raw, m):
  """[B, T] -> [B, M, M]: fill_triangular(upper) layout, c tanh diagonal."""
  jnp = _jnp()
  flat = jnp.concatenate([raw, raw[:, m:][:, ::-1]], axis=1)
  matrix = jnp.triu(flat.reshape((-1, m, m)))
  diagonal = handwritten_spec.DIAGONAL_BOUND * jnp.tanh(
      jnp.diagonal(matrix, axis1=1, axis2=2))
  eye = jnp.eye(m, dtype=raw.dtype)
  return matrix * (1.0 - eye) + diagonal[:, None, :] * eye


def planar_flows(p, spec, z, context):
  """K amortized planar maps: (zK [B, d], log|det| [B])."""
  jnp = _jnp()
  import jax  # pylint: disable=g-import-not-at-top
  raw = flow_parameters(p, spec, context)
  u, w, b = raw["flow/u"], raw["flow/w"], raw["flow/b"]  # [B, K, d|d|1]
  wu = jnp.sum(w * u, -1, keepdims=True)
  m_wu = jax.nn.softplus(wu) - 1.0
  u_hat = u + (m_wu - wu) * w / jnp.sum(jnp.square(w), -1, keepdims=True)
  log_det = 0.0
  for i in range(spec.num_flows):
    h = jnp.tanh(jnp.sum(w[:, i] * z, -1, keepdims=True) + b[:, i])
    z = z + u_hat[:, i] * h
    det = 1.0 + (1.0 - jnp.square(h)) * m_wu[:, i]
    log_det += jnp.log(jnp.abs(det[:, 0]))
  return z, log_det


def sylvester_flows(p, spec, z, context):
  """Amortized orthogonal Sylvester layers: (zK [B, d], log|det| [B])."""
  jnp = _jnp()
  raw, m = flow_parameters(p, spec, context), spec.m
  log_det = 0.0
  # Every layer's Q depends on the context only: one batched QR of all of
  # them ([F B, d, M]). Also a workaround: jaxlib 0.10's CPU QR kernels
  # wait for their batch tasks on the pool that runs them, and two QRs
  # running at once (XLA runs independent ops concurrently) on a 2-thread
  # pool wait for each other forever.
  q_raw = jnp.stack([raw[f"flow{f}/q"]
                     for f in range(spec.num_flows)])  # [F, B, d, M]
  q_all, r_all = jnp.linalg.qr(q_raw.reshape((-1, spec.latent_dim, m)),
                               mode="reduced")
  signs = jnp.where(jnp.diagonal(r_all, axis1=1, axis2=2) < 0, -1.0, 1.0)
  q_all = (q_all * signs[:, None, :]).reshape(q_raw.shape)
  for f in range(spec.num_flows):
    q = q_all[f]
    r = upper_triangular(raw[f"flow{f}/r"], m)
    r_tilde = upper_triangular(raw[f"flow{f}/r_tilde"], m)
    b = raw[f"flow{f}/b"]
    qt_z = jnp.einsum("bdm,bd->bm", q, z)
    h = jnp.tanh(jnp.einsum("bmn,bn->bm", r_tilde, qt_z) + b)
    z = z + jnp.einsum("bdm,bm->bd", q, jnp.einsum("bmn,bn->bm", r, h))
    diag = (jnp.diagonal(r, axis1=1, axis2=2)
            * jnp.diagonal(r_tilde, axis1=1, axis2=2))
    log_det += jnp.sum(jnp.log(jnp.abs(1.0 + diag * (1.0 - jnp.square(h)))),
                       -1)
  return z, log_det


def loss_fn(p, spec, x, y, eps, beta):
  """Mean loss of the batch; p: name -> array."""
  jnp = _jnp()
  import jax  # pylint: disable=g-import-not-at-top
  h = 2.0 * x - 1.0 if spec.centered_inputs else x
  for i in range(len(spec.encoder_hidden)):
    h = jax.nn.relu(_dense(p, f"enc{i}", h))
  loc = _dense(p, "loc", h)
  scale = jax.nn.softplus(_dense(p, "scale", h) + spec.scale_shift)
  scale = scale + spec.min_scale
  z = loc + scale * eps
  if spec.has_flows:
    context = jax.nn.relu(_dense(p, "context", h))
    flows = planar_flows if spec.flow == "planar" else sylvester_flows
    zk, log_det = flows(p, spec, z, context)
    log_q0 = jnp.sum(-0.5 * jnp.square(eps) - jnp.log(scale)
                     - handwritten_spec.HALF_LOG_2PI, -1)
    log_pz = jnp.sum(-0.5 * jnp.square(zk) - handwritten_spec.HALF_LOG_2PI,
                     -1)
    kl = log_q0 - log_det - log_pz
  else:
    zk = z
    kl = (0.5 * jnp.sum(jnp.square(loc) + jnp.square(scale) - 1.0, -1)
          - jnp.sum(jnp.log(scale), -1))
  g = zk
  for i in range(len(spec.decoder_hidden)):
    g = jax.nn.relu(_dense(p, f"gen{i}", g))
  logits = _dense(p, "out", g)
  if spec.kind == "vae":
    # -log Bernoulli(x; sigmoid(l)) = max(l, 0) - l x + log(1 + exp(-|l|)).
    nll = jnp.sum(jnp.maximum(logits, 0.0) - logits * x
                  + jnp.log1p(jnp.exp(-jnp.abs(logits))), -1)
  else:
    log_probs = jax.nn.log_softmax(logits, -1)
    nll = -jnp.take_along_axis(log_probs, y[:, None], axis=-1)[:, 0]
  return jnp.mean(nll + beta * kl)


class HandwrittenJAXStep:
  """A `Spec` trained by a hand-written, jitted JAX step.

  Args:
    name: row name.
    spec: `handwritten_spec.Spec`.
    batch: {"x": [B, D] float32, "y": [B] int32}.
    params: initial weights {name: array} (default `init_params(spec, seed)`).
    seed: weights and noise seed.
  """

  def __init__(self, name, spec, batch, params=None, seed=0):
    import jax  # pylint: disable=g-import-not-at-top
    jnp = _jnp()
    self.name = name
    self.spec = spec
    self.examples_per_step = int(batch["x"].shape[0])
    self.batch = (jnp.asarray(batch["x"], jnp.float32),
                  jnp.asarray(batch["y"], jnp.int32))
    if params is None:
      params = handwritten_spec.init_params(spec, seed)
    # Distinct buffers: the step donates (updates in place) all of them.
    arrays = {k: np.asarray(v, np.float32) for k, v in params.items()}
    self.state = (
        {k: jnp.array(v) for k, v in arrays.items()},
        {k: jnp.zeros(v.shape, jnp.float32) for k, v in arrays.items()},
        {k: jnp.zeros(v.shape, jnp.float32) for k, v in arrays.items()},
        ({k: jnp.array(v) for k, v in arrays.items()} if spec.ema_decay
         else {}),
        jnp.zeros((), jnp.int32))
    self.key = jax.random.PRNGKey(seed)
    self._step_fn = jax.jit(self._make_step(), donate_argnums=(0,))

  @property
  def params(self):
    return self.state[0]

  def loss(self, eps, beta):
    """The loss at the current weights for given noise [B, d] (no update)."""
    x, y = self.batch
    return float(loss_fn(self.params, self.spec, x, y, _jnp().asarray(eps),
                         float(beta)))

  def _make_step(self):
    import jax  # pylint: disable=g-import-not-at-top
    jnp = _jnp()
    spec = self.spec
    b1 = spec.beta_1
    b2, epsilon = handwritten_spec.ADAM_BETA_2, handwritten_spec.ADAM_EPSILON

    def step(state, key, x, y):
      params, m, v, average, t_int = state
      t0 = t_int.astype(jnp.float32)
      beta = spec.beta
      if spec.warmup_steps:
        beta = beta * jnp.minimum(1.0, t0 / float(spec.warmup_steps))
      eps = jax.random.normal(jax.random.fold_in(key, t_int),
                              (x.shape[0], spec.latent_dim), jnp.float32)
      loss, grads = jax.value_and_grad(loss_fn)(params, spec, x, y, eps, beta)
      lr = spec.learning_rate
      if spec.decay_steps:
        lr = lr * spec.decay_rate ** jnp.floor(t0 / float(spec.decay_steps))
      t = t0 + 1.0
      lr_t = lr * jnp.sqrt(1.0 - b2**t) / (1.0 - b1**t)
      m = jax.tree_util.tree_map(lambda m_, g: b1 * m_ + (1.0 - b1) * g, m,
                                 grads)
      v = jax.tree_util.tree_map(
          lambda v_, g: b2 * v_ + (1.0 - b2) * jnp.square(g), v, grads)
      params = jax.tree_util.tree_map(
          lambda w, m_, v_: w - lr_t * m_ / (jnp.sqrt(v_) + epsilon), params,
          m, v)
      if average:
        d = jnp.where(t0 > 0, spec.ema_decay, 0.0)
        average = jax.tree_util.tree_map(lambda a, w: d * a + (1.0 - d) * w,
                                         average, params)
      return (params, m, v, average, t_int + 1), loss

    return step

  def step(self):
    x, y = self.batch
    self.state, loss = self._step_fn(self.state, self.key, x, y)
    return handwritten_spec.finite_loss(self.name, loss)
