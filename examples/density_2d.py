"""Flow layers in your own Keras model: a density model of 2-D points.

The flow maps data x to a standard-normal u (the normalizing direction), so
    log p(x) = log N(u; 0, I) + log|det du/dx|
needs only the forward pass: any flow works, even those without an inverse.
Trained with model.fit, saved as .keras, reloaded with the same outputs.

The flows are written with keras.ops, so this runs on every Keras backend:
    KERAS_BACKEND=jax python examples/density_2d.py
examples/density_2d_benchmark.py times its training on each backend.
"""

import math

import keras
from keras import ops
from sklearn.datasets import make_moons

from vib_flows import flows

keras.utils.set_random_seed(0)  # Same weights and batches on every run.
x_train = make_moons(2000, noise=0.05, random_state=0)[0].astype("float32")
x_test = make_moons(500, noise=0.05, random_state=1)[0].astype("float32")

x = keras.Input((2,), name="x")
stack = flows.make_stack("spline", 4)  # Spline layers, Reverse between them.
u, log_det = stack(x)
log_prob = -0.5 * ops.sum(u**2, axis=-1) - math.log(2 * math.pi) + log_det
model = keras.Model(x, log_prob, name="moons_density")



def negative_log_likelihood(unused_targets, log_prob):
  return -ops.mean(log_prob)


model.compile(optimizer=keras.optimizers.Adam(3e-3),
              loss=negative_log_likelihood)
model.fit(x_train, x_train[:, 0], batch_size=200, epochs=40, verbose=0)
print("held-out log-likelihood per point:", float(ops.mean(model(x_test))))

model.save("moons_density.keras")
reloaded = keras.models.load_model("moons_density.keras", compile=False)
print("same after reload:", bool(ops.all(reloaded(x_test) == model(x_test))))
