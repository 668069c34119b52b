"""An independent reference for the results table's "no flow" row, in JAX.

Trains the plain-Gaussian VAE of configs/vae_digits.py with none of vib_flows'
code (JAX + optax instead of TensorFlow + Keras + TFP) under the same
protocol, and prints the same test metrics. If vib_flows' ELBO, KL, sampling,
evaluation or training loop were wrong, the two would disagree by more than
the seed-to-seed spread.

Protocol (the `train` arguments; the benchmark's whole-run case passes the
fields of configs/vae_digits.py): scikit-learn's 8x8 digits, split 1000 / 350
/ 447 in order; pixels are 17-level categorical, the encoder sees x / 16;
latent 16; encoder and decoder MLPs 256-256 with ReLU or LeakyReLU (slope 0.2
on negative inputs, Keras' default), Glorot-uniform weights and zero biases
(Keras' defaults); q(z|x) = N(loc, (softplus(s) + 1e-4)^2); p(z) = N(0, I);
loss per example -log p(x|z) + beta_t KL(q || p) with one sample and the KL in
closed form, beta_t = min(1, t / warmup) for step t (1 without warm-up); Adam
or Adamax, shuffled every epoch; the single-sample validation -ELBO picks the
best epoch, early stopping after `patience` epochs without gain once the
warm-up is over. The command line's defaults are the protocol of
configs/vae_digits.py (Adamax 3e-3, batch 32, no warm-up, LeakyReLU, up to
1000 epochs, patience 20); `--learning_rate 1e-3 --batch 64` gives the book
code's. Test: K = 5000 importance samples per image,

    log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x),
    ELBO = mean_k log w_k,    log p(x) >= logmeanexp_k log w_k  (Burda 2016).

Run (needs `pip install "jax[cpu]" optax scikit-learn`, not vib_flows):

    python -m experiments.research.reference_vae_jax --seeds 0 1 2
    python -m experiments.research.reference_vae_jax --optimizer adam \
        --batch 100 --warmup 200 --activation relu --epochs 100
        # (the old protocol)
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn import datasets

LEVELS = 17
LATENT = 16
HIDDEN = (256, 256)
MIN_SCALE = 1e-4


def digits_split():
  x = datasets.load_digits().data.astype(np.int32)  # [1797, 64], 0..16.
  return x[:1000], x[1000:1350], x[1350:]


def glorot_layer(key, n_in, n_out):
  limit = np.sqrt(6.0 / (n_in + n_out))
  w = jax.random.uniform(key, (n_in, n_out), jnp.float32, -limit, limit)
  return {"w": w, "b": jnp.zeros((n_out,), jnp.float32)}


def init_params(key):
  sizes_enc = (64,) + HIDDEN
  sizes_dec = (LATENT,) + HIDDEN
  keys = iter(jax.random.split(key, 16))
  enc = [glorot_layer(next(keys), a, b)
         for a, b in zip(sizes_enc[:-1], sizes_enc[1:])]
  dec = [glorot_layer(next(keys), a, b)
         for a, b in zip(sizes_dec[:-1], sizes_dec[1:])]
  return {"enc": enc, "loc": glorot_layer(next(keys), HIDDEN[-1], LATENT),
          "scale": glorot_layer(next(keys), HIDDEN[-1], LATENT),
          "dec": dec,
          "logits": glorot_layer(next(keys), HIDDEN[-1], 64 * LEVELS)}


ACTIVATIONS = {"relu": jax.nn.relu,
               "leaky_relu": lambda h: jax.nn.leaky_relu(h, 0.2)}
OPTIMIZERS = {"adam": optax.adam, "adamax": optax.adamax}


def mlp(layers, h, activation=jax.nn.relu):
  for layer in layers:
    h = activation(h @ layer["w"] + layer["b"])
  return h


def encode(params, x, activation=jax.nn.relu):
  h = mlp(params["enc"], x.astype(jnp.float32) / (LEVELS - 1), activation)
  loc = h @ params["loc"]["w"] + params["loc"]["b"]
  scale = jax.nn.softplus(h @ params["scale"]["w"] + params["scale"]["b"])
  return loc, scale + MIN_SCALE


def log_px(params, x, z, activation=jax.nn.relu):
  """Log p(x|z): x [..., 64] ints, z [..., 16] -> [...]."""
  h = mlp(params["dec"], z, activation)
  logits = (h @ params["logits"]["w"] + params["logits"]["b"]).reshape(
      z.shape[:-1] + (64, LEVELS))
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  x = jnp.broadcast_to(x, z.shape[:-1] + (64,))
  picked = jnp.take_along_axis(log_probs, x[..., None], axis=-1)[..., 0]
  return picked.sum(-1)


def log_normal(z, loc, scale):
  return jnp.sum(-0.5 * ((z - loc) / scale) ** 2 - jnp.log(scale)
                 - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


def kl_to_standard_normal(loc, scale):
  return jnp.sum(0.5 * (loc ** 2 + scale ** 2 - 1.0) - jnp.log(scale), axis=-1)


def loss_terms(params, x, key, beta, activation=jax.nn.relu):
  loc, scale = encode(params, x, activation)
  z = loc + scale * jax.random.normal(key, loc.shape)
  rec = log_px(params, x, z, activation)
  kl = kl_to_standard_normal(loc, scale)
  return jnp.mean(-rec + beta * kl), (jnp.mean(rec), jnp.mean(kl))


def log_weights(params, x, key, k, activation=jax.nn.relu):
  """[k, B] log w for x [B, 64]."""
  loc, scale = encode(params, x, activation)
  z = loc + scale * jax.random.normal(key, (k,) + loc.shape)
  return (log_px(params, x, z, activation) + log_normal(z, 0.0, 1.0)
          - log_normal(z, loc, scale))


def test_metrics(params, x, key, k=5000, chunk=250, activation=jax.nn.relu):
  """(mean ELBO, mean IW log-likelihood) of x with k samples per image."""
  fn = jax.jit(lambda kk: log_weights(params, x, kk, chunk, activation))
  parts = [fn(kk) for kk in jax.random.split(key, k // chunk)]
  lw = jnp.concatenate(parts, axis=0)  # [k, B]
  elbo = jnp.mean(lw)
  iw = jnp.mean(jax.scipy.special.logsumexp(lw, axis=0) - jnp.log(k))
  return float(elbo), float(iw)


def train(seed, epochs=1000, warmup=0, patience=20, batch=32,
          optimizer="adamax", learning_rate=3e-3, activation="leaky_relu",
          num_importance_samples=5000, phase_seconds=None):
  """Trains one seed; returns its test metrics and training time.

  "train_seconds" runs from the first step to the end of the loop (JIT
  compilation included), "setup_seconds" before it (data, parameters,
  optimizer state). With `num_importance_samples` 0 the test metrics are
  skipped (the timing studies need none).

  `phase_seconds`, a dict, receives the seconds of the loop's phases
  (experiments/research/whole_run_phases.py): "build" (the setup), "first
  call" (the first step's excess over a later one: tracing and compiling),
  "steps", "validation trace" (the first validation's excess),
  "validation" and "other". Timing them waits for each epoch's last step
  before the validation (which waits for it anyway) and for the first step.
  """
  setup_start = time.perf_counter()
  x_train, x_val, x_test = digits_split()
  act = ACTIVATIONS[activation]
  key = jax.random.PRNGKey(seed)
  key, init_key = jax.random.split(key)
  params = init_params(init_key)
  optimizer = OPTIMIZERS[optimizer](learning_rate)
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state, x, key, beta):
    grads, aux = jax.grad(loss_terms, has_aux=True)(params, x, key, beta, act)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, aux

  val_loss = jax.jit(lambda p, kk: loss_terms(p, x_val, kk, 1.0, act)[0])
  rng = np.random.default_rng(seed)
  best, best_params, bad, t, curve = np.inf, params, 0, 0, []
  timed = phase_seconds is not None
  clock = time.perf_counter
  first_step = step_seconds = 0.0
  validations = []
  start = clock()
  setup_seconds = start - setup_start
  for epoch in range(epochs):
    order = rng.permutation(len(x_train))
    epoch_start = clock()
    for i in range(len(x_train) // batch):
      key, sub = jax.random.split(key)
      beta = min(1.0, t / warmup) if warmup else 1.0
      params, opt_state, _ = step(params, opt_state,
                                  x_train[order[i * batch:(i + 1) * batch]],
                                  sub, beta)
      if timed and t == 0:
        jax.block_until_ready(params)
        first_step = clock() - epoch_start
      t += 1
    if timed:
      jax.block_until_ready(params)
      step_seconds += clock() - epoch_start
    validation_start = clock()
    key, sub = jax.random.split(key)
    loss = float(val_loss(params, sub))
    validations.append(clock() - validation_start)
    curve.append(loss)
    if loss < best:
      best, best_params, bad, best_epoch = loss, params, 0, epoch + 1
    elif t >= warmup:
      bad += 1
    if bad >= patience:
      break
  seconds = clock() - start
  if timed:
    # A later step's time: the steps after the first, over their number.
    per_step = (step_seconds - first_step) / max(t - 1, 1)
    validation_excess = (validations[0] - float(np.median(validations[1:]))
                         if len(validations) > 1 else 0.0)
    phase_seconds.update({
        "build": setup_seconds,
        "first call": max(first_step - per_step, 0.0),
        "steps": per_step * t,
        "validation trace": max(validation_excess, 0.0),
        "validation": sum(validations) - max(validation_excess, 0.0)})
    phase_seconds["other"] = seconds + setup_seconds - sum(
        phase_seconds.values())
  result = {"seed": seed, "best_epoch": best_epoch, "epochs_run": len(curve),
            "steps": t, "train_seconds": seconds,
            "setup_seconds": setup_seconds}
  if not num_importance_samples:
    return result
  key, sub = jax.random.split(key)
  elbo, iw = test_metrics(best_params, x_test, sub, num_importance_samples,
                          activation=act)
  loc, scale = encode(best_params, x_test, act)
  kl = float(jnp.mean(kl_to_standard_normal(loc, scale)))
  result.update(test_elbo=elbo, test_log_likelihood=iw, test_kl=kl)
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS),
                      default="adamax")
  parser.add_argument("--learning_rate", type=float, default=3e-3)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--warmup", type=int, default=0,
                      help="KL warm-up steps (0: beta = 1 from the start).")
  parser.add_argument("--activation", choices=sorted(ACTIVATIONS),
                      default="leaky_relu")
  parser.add_argument("--epochs", type=int, default=1000)
  parser.add_argument("--patience", type=int, default=20)
  parser.add_argument("--importance_samples", type=int, default=5000)
  args = parser.parse_args()
  runs = []
  for seed in args.seeds:
    r = train(seed, epochs=args.epochs, warmup=args.warmup,
              patience=args.patience, batch=args.batch,
              optimizer=args.optimizer, learning_rate=args.learning_rate,
              activation=args.activation,
              num_importance_samples=args.importance_samples)
    runs.append(r)
    print(f"seed {seed}: -ELBO {-r['test_elbo']:.2f}  -log p(x) "
          f"{-r['test_log_likelihood']:.2f}  KL {r['test_kl']:.2f}  best epoch "
          f"{r['best_epoch']} of {r['epochs_run']}  {r['train_seconds']:.0f} s",
          flush=True)
  for key in ("test_elbo", "test_log_likelihood", "test_kl"):
    values = np.array([-r[key] if key != "test_kl" else r[key] for r in runs])
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    unit = "negated: nats, lower is better" if key != "test_kl" else "nats"
    print(f"{key}: {values.mean():.2f} ± {std:.2f} over {len(values)} seeds "
          f"({unit})")


if __name__ == "__main__":
  main()
