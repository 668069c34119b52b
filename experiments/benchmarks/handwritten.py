"""The benchmark networks as a minimal hand-written TensorFlow training step.

No vib_flows code: plain `tf.Variable` weights (Glorot-uniform, as Keras'
Dense), `tf.GradientTape` inside one `tf.function`, a hand-written Adam
update (Keras' defaults: beta1 0.9, beta2 0.999, epsilon 1e-7), the Bernoulli
log-likelihood as `tf.nn.sigmoid_cross_entropy_with_logits`, softmax
cross-entropy for the VIB, and the closed-form Gaussian KL

    KL(N(m, s^2) || N(0, 1)) = 1/2 sum_i (m_i^2 + s_i^2 - 1) - sum_i log s_i.

It is what a user would write by hand for the no-flow VAE and VIB; the
package's step on the same shapes is compared with it.
"""

import numpy as np
import tensorflow as tf

MIN_SCALE = 1e-4  # As configs/default.py model.min_scale.


def _dense(rng, fan_in, fan_out, name):
  limit = np.sqrt(6.0 / (fan_in + fan_out))
  w = rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)
  return (tf.Variable(w, name=f"{name}_kernel"),
          tf.Variable(tf.zeros([fan_out]), name=f"{name}_bias"))


def _mlp(layers, h):
  """ReLU on every layer but the last (linear)."""
  for i, (w, b) in enumerate(layers):
    h = tf.matmul(h, w) + b
    if i < len(layers) - 1:
      h = tf.nn.relu(h)
  return h


class HandwrittenStep:
  """A no-flow VAE or VIB trained by a hand-written step.

  Args:
    name: row name.
    kind: "vae" (Bernoulli decoder) or "vib" (softmax classifier on z).
    input_dim, encoder_hidden, latent_dim, decoder_hidden: the shapes.
    num_classes: VIB classes.
    batch: {"x": [B, input_dim] float32, "y": [B] int32}.
    jit_compile: XLA-compile the whole step.
    beta: KL weight.
    learning_rate: Adam learning rate.
    seed: weights and posterior noise.
  """

  def __init__(self, name, kind, input_dim, encoder_hidden, latent_dim,
               decoder_hidden, num_classes, batch, jit_compile, beta=1.0,
               learning_rate=1e-3, seed=0):
    self.name = name
    self.examples_per_step = int(batch["x"].shape[0])
    self.batch = batch
    rng = np.random.default_rng(seed)
    widths = [input_dim, *encoder_hidden]
    self.encoder = [_dense(rng, a, b, f"enc{i}")
                    for i, (a, b) in enumerate(zip(widths, widths[1:]))]
    self.loc = _dense(rng, widths[-1], latent_dim, "loc")
    self.scale = _dense(rng, widths[-1], latent_dim, "scale")
    out = input_dim if kind == "vae" else num_classes
    widths = [latent_dim, *decoder_hidden, out]
    self.decoder = [_dense(rng, a, b, f"dec{i}")
                    for i, (a, b) in enumerate(zip(widths, widths[1:]))]
    self.variables = [v for pair in (*self.encoder, self.loc, self.scale,
                                     *self.decoder) for v in pair]
    self.m = [tf.Variable(tf.zeros_like(v)) for v in self.variables]
    self.v = [tf.Variable(tf.zeros_like(v)) for v in self.variables]
    self.t = tf.Variable(0, dtype=tf.int64)
    self.kind = kind
    self.beta = float(beta)
    self.learning_rate = float(learning_rate)
    self.seed = int(seed)
    self.train_step = tf.function(self._step, jit_compile=bool(jit_compile))

  def _loss(self, batch, seed):
    x = batch["x"]
    h = tf.nn.relu(_mlp(self.encoder, x)) if self.encoder else x
    loc = tf.matmul(h, self.loc[0]) + self.loc[1]
    scale = tf.nn.softplus(tf.matmul(h, self.scale[0]) + self.scale[1])
    scale += MIN_SCALE
    eps = tf.random.stateless_normal(tf.shape(loc), seed=seed)
    z = loc + scale * eps
    out = _mlp(self.decoder, z)
    if self.kind == "vae":
      nll = tf.reduce_sum(
          tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=out), -1)
    else:
      nll = tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels=batch["y"], logits=out)
    kl = (0.5 * tf.reduce_sum(tf.square(loc) + tf.square(scale) - 1.0, -1)
          - tf.reduce_sum(tf.math.log(scale), -1))
    return tf.reduce_mean(nll + self.beta * kl)

  def _step(self, batch):
    seed = tf.stack([tf.constant(self.seed, tf.int64), self.t])
    with tf.GradientTape() as tape:
      loss = self._loss(batch, seed)
    grads = tape.gradient(loss, self.variables)
    self.t.assign_add(1)
    t = tf.cast(self.t, tf.float32)
    b1, b2, eps = 0.9, 0.999, 1e-7
    lr = self.learning_rate * tf.sqrt(1.0 - b2**t) / (1.0 - b1**t)
    for var, g, m, v in zip(self.variables, grads, self.m, self.v):
      m.assign(b1 * m + (1.0 - b1) * g)
      v.assign(b2 * v + (1.0 - b2) * tf.square(g))
      var.assign_sub(lr * m / (tf.sqrt(v) + eps))
    return loss

  def step(self):
    loss = float(self.train_step(self.batch))
    if not np.isfinite(loss):
      raise FloatingPointError(f"{self.name}: non-finite loss {loss}")
    return loss
