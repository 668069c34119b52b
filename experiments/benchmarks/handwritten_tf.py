"""The benchmark's models as a hand-written TensorFlow training step.

No vib_flows code: the model, flows and recipe of a
`handwritten_spec.Spec` written in plain TensorFlow, `tf.Variable` weights
(`handwritten_spec.init_params`: dense kernels Glorot-uniform as Keras'),
`tf.GradientTape` inside one `tf.function` (XLA on or off), the Adam update
(Keras' defaults), its staircase rate and the weight average written out, the
Bernoulli log-likelihood as `tf.nn.sigmoid_cross_entropy_with_logits`, softmax
cross-entropy for the VIB, and without flows the closed-form Gaussian KL

    KL(N(m, s^2) || N(0, 1)) = 1/2 sum_i (m_i^2 + s_i^2 - 1) - sum_i log s_i.

It is the step of both comparisons: the no-flow VAE and VIB of the `hand`
cases (`runs`: what a user would write by hand) and the MNIST-scale cases
(`mnist`). The flows follow the papers:

  planar (Rezende & Mohamed 2015, Appendix A.1), map k of K:
      u_hat = u + (m(w^T u) - w^T u) w / ||w||^2,   m(a) = -1 + softplus(a)
      z <- z + u_hat tanh(w^T z + b),
      log|det| = log|1 + (1 - tanh^2) w^T u_hat|
  orthogonal Sylvester (van den Berg et al. 2018), per layer:
      Q = the thin QR factor of the raw [d, M] matrix (column signs making
          the R factor's diagonal positive), R, R~ upper triangular with
          diagonals c tanh(raw), c = 0.9995
      z <- z + Q R tanh(R~ Q^T z + b),
      log|det| = sum_m log|1 + r_mm r~_mm (1 - tanh^2(a_m))|

with every parameter computed per example from the context (amortized).
The upper triangles are packed row by row as TFP's
`fill_triangular(upper=True)` packs them (the first M raw entries are the
first row, the rest reversed follow), so that the package's weights load
unchanged (the tests compare losses at identical weights).
"""

import tensorflow as tf

from experiments.benchmarks import handwritten_spec


def _dense(p, name, h):
  return tf.matmul(h, p[f"{name}/kernel"]) + p[f"{name}/bias"]


def flow_parameters(p, spec, context):
  """{name: [B, *shape]}: each amortized flow parameter, the bias plus c K.

  Names and shapes: `Spec.flow_parameter_shapes`.
  """
  return {name: tf.reshape(tf.matmul(context, p[f"{name}_kernel"]),
                           [-1, *shape]) + p[name]
          for name, shape in spec.flow_parameter_shapes()}


def upper_triangular(raw, m):
  """[B, T] -> [B, M, M]: fill_triangular(upper) layout, c tanh diagonal."""
  flat = tf.concat([raw, tf.reverse(raw[:, m:], axis=[1])], axis=1)
  matrix = tf.linalg.band_part(tf.reshape(flat, [-1, m, m]), 0, -1)
  diagonal = handwritten_spec.DIAGONAL_BOUND * tf.tanh(
      tf.linalg.diag_part(matrix))
  return tf.linalg.set_diag(matrix, diagonal)


def planar_flows(p, spec, z, context):
  """K amortized planar maps: (zK [B, d], log|det| [B])."""
  raw = flow_parameters(p, spec, context)
  u, w, b = raw["flow/u"], raw["flow/w"], raw["flow/b"]  # [B, K, d|d|1]
  wu = tf.reduce_sum(w * u, -1, keepdims=True)  # [B, K, 1]
  m_wu = tf.nn.softplus(wu) - 1.0
  u_hat = u + (m_wu - wu) * w / tf.reduce_sum(tf.square(w), -1,
                                              keepdims=True)
  log_det = 0.0
  for i in range(spec.num_flows):
    a = tf.reduce_sum(w[:, i] * z, -1, keepdims=True) + b[:, i]
    h = tf.tanh(a)
    z = z + u_hat[:, i] * h
    det = 1.0 + (1.0 - tf.square(h)) * m_wu[:, i]
    log_det += tf.math.log(tf.abs(det[:, 0]))
  return z, log_det


def sylvester_flows(p, spec, z, context):
  """Amortized orthogonal Sylvester layers: (zK [B, d], log|det| [B])."""
  raw, m = flow_parameters(p, spec, context), spec.m
  log_det = 0.0
  for f in range(spec.num_flows):
    q, r_factor = tf.linalg.qr(raw[f"flow{f}/q"])
    signs = tf.where(tf.linalg.diag_part(r_factor) < 0, -1.0, 1.0)
    q = q * signs[:, None, :]  # [B, d, M]
    r = upper_triangular(raw[f"flow{f}/r"], m)
    r_tilde = upper_triangular(raw[f"flow{f}/r_tilde"], m)
    b = raw[f"flow{f}/b"]
    qt_z = tf.einsum("bdm,bd->bm", q, z)
    h = tf.tanh(tf.einsum("bmn,bn->bm", r_tilde, qt_z) + b)
    z = z + tf.einsum("bdm,bm->bd", q, tf.einsum("bmn,bn->bm", r, h))
    diag = tf.linalg.diag_part(r) * tf.linalg.diag_part(r_tilde)
    log_det += tf.reduce_sum(
        tf.math.log(tf.abs(1.0 + diag * (1.0 - tf.square(h)))), -1)
  return z, log_det


def loss_fn(p, spec, x, y, eps, beta):
  """Mean loss of the batch; p: name -> tensor (or variable)."""
  h = 2.0 * x - 1.0 if spec.centered_inputs else x
  for i in range(len(spec.encoder_hidden)):
    h = tf.nn.relu(_dense(p, f"enc{i}", h))
  loc = _dense(p, "loc", h)
  scale = tf.nn.softplus(_dense(p, "scale", h) + spec.scale_shift)
  scale += spec.min_scale
  z = loc + scale * eps
  if spec.has_flows:
    context = tf.nn.relu(_dense(p, "context", h))
    flows = (planar_flows if spec.flow == "planar" else sylvester_flows)
    zk, log_det = flows(p, spec, z, context)
    log_q0 = tf.reduce_sum(-0.5 * tf.square(eps) - tf.math.log(scale)
                           - handwritten_spec.HALF_LOG_2PI, -1)
    log_pz = tf.reduce_sum(
        -0.5 * tf.square(zk) - handwritten_spec.HALF_LOG_2PI, -1)
    kl = log_q0 - log_det - log_pz
  else:
    zk = z
    kl = (0.5 * tf.reduce_sum(tf.square(loc) + tf.square(scale) - 1.0, -1)
          - tf.reduce_sum(tf.math.log(scale), -1))
  g = zk
  for i in range(len(spec.decoder_hidden)):
    g = tf.nn.relu(_dense(p, f"gen{i}", g))
  logits = _dense(p, "out", g)
  if spec.kind == "vae":
    nll = tf.reduce_sum(
        tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits), -1)
  else:
    nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                         logits=logits)
  return tf.reduce_mean(nll + beta * kl)


class HandwrittenTFStep:
  """A `Spec` trained by a hand-written TensorFlow step.

  Args:
    name: row name.
    spec: `handwritten_spec.Spec`.
    batch: {"x": [B, D] float32, "y": [B] int32}.
    jit_compile: XLA-compile the whole step.
    params: initial weights {name: array} (default `init_params(spec, seed)`).
    seed: weights and noise seed.
  """

  def __init__(self, name, spec, batch, jit_compile, params=None, seed=0):
    self.name = name
    self.spec = spec
    self.examples_per_step = int(batch["x"].shape[0])
    self.batch = {"x": tf.constant(batch["x"], tf.float32),
                  "y": tf.constant(batch["y"], tf.int32)}
    if params is None:
      params = handwritten_spec.init_params(spec, seed)
    self.params = {k: tf.Variable(v, name=k.replace("/", "_"))
                   for k, v in params.items()}
    self.variables = list(self.params.values())  # The update order.
    self.m = [tf.Variable(tf.zeros_like(v)) for v in params.values()]
    self.v = [tf.Variable(tf.zeros_like(v)) for v in params.values()]
    self.average = ([tf.Variable(v) for v in params.values()]
                    if spec.ema_decay else [])
    self.t = tf.Variable(0, dtype=tf.int64)
    self.seed = int(seed)
    self.train_step = tf.function(self._step, jit_compile=bool(jit_compile),
                                  autograph=False)

  def loss(self, eps, beta):
    """The loss at the current weights for given noise [B, d] (no update)."""
    return float(loss_fn(self.params, self.spec, self.batch["x"],
                         self.batch["y"], tf.constant(eps), float(beta)))

  def _loss(self, batch, seed, beta):
    """The loss of `batch` with the noise eps [B, d] drawn from `seed`."""
    eps = tf.random.stateless_normal(
        [tf.shape(batch["x"])[0], self.spec.latent_dim], seed=seed)
    return loss_fn(self.params, self.spec, batch["x"], batch["y"], eps, beta)

  def _step(self, batch):
    spec = self.spec
    t0 = tf.cast(self.t, tf.float32)  # Steps done before this one.
    beta = tf.constant(spec.beta, tf.float32)
    if spec.warmup_steps:
      beta *= tf.minimum(1.0, t0 / float(spec.warmup_steps))
    seed = tf.stack([tf.constant(self.seed, tf.int64), self.t])
    with tf.GradientTape() as tape:
      loss = self._loss(batch, seed, beta)
    grads = tape.gradient(loss, self.variables)
    lr = tf.constant(spec.learning_rate, tf.float32)
    if spec.decay_steps:
      lr *= spec.decay_rate ** tf.floor(t0 / float(spec.decay_steps))
    t = t0 + 1.0
    b1 = spec.beta_1
    b2, epsilon = handwritten_spec.ADAM_BETA_2, handwritten_spec.ADAM_EPSILON
    lr_t = lr * tf.sqrt(1.0 - b2**t) / (1.0 - b1**t)
    for var, g, m, v in zip(self.variables, grads, self.m, self.v):
      m.assign(b1 * m + (1.0 - b1) * g)
      v.assign(b2 * v + (1.0 - b2) * tf.square(g))
      var.assign_sub(lr_t * m / (tf.sqrt(v) + epsilon))
    if self.average:
      d = tf.where(t0 > 0, spec.ema_decay, 0.0)
      for var, a in zip(self.variables, self.average):
        a.assign(d * a + (1.0 - d) * var)
    self.t.assign_add(1)
    return loss

  def step(self):
    return handwritten_spec.finite_loss(self.name,
                                        self.train_step(self.batch))
