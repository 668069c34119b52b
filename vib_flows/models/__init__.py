"""The VAE and VIB Keras models.

encoder -> q0(z0|x) -> FlowStack -> zK -> generator:

    z0 = mu(x) + sigma(x) * eps,     eps ~ N(0, I)   (Kingma & Welling 2014)
    zK, sum_k log|det J_k| = flow(z0, context(x))
                  (Rezende & Mohamed 2015; van den Berg et al. 2018)
    log qK(zK|x) = log q0(z0|x) - sum_k log|det J_k|
    VAE: loss = E_q[-log p(x|zK)] + beta * E_q[log qK(zK|x) - log p(zK)]
    VIB: loss = E_q[-log p(y|zK)] + beta * E_q[log qK(zK|x) - log p(zK)]
                                                      (Alemi et al. 2017)

Randomness: every method takes an explicit `seed`, an integer tensor of shape
[2] for stateless ops (`tf.random.stateless_normal`), so that runs repeat and a
SavedModel signature can sample with a seed derived from its inputs.
`train_step` (`fit`) seeds step t with `step_seed(seed, t)` as the trainer does;
only `call` and `test_step` (`predict`/`evaluate`) draw seeds from the model's
`keras.random.SeedGenerator` (not saved in .keras files: a reloaded model's
starts again from `seed`). For the same seed,
`encode(x, seed)["z"]` is the sample that `per_example_loss` (num_samples=1)
uses.

Single-replica view: `per_example_loss` returns per-example tensors; the trainer
averages them over the global batch. The score-function baseline is a
non-trainable float32 weight with aggregation "mean" that `per_example_loss`
updates in place when `training=True` (under tf.distribute, each replica assigns
its moving average and the strategy averages them; the result is the moving
average of the global-batch mean cost).

Modules: `latent` (`LatentVariableModel`: posterior, KL, estimators, fit and
saving), `vae` (`VAE`), `vib` (`VIB`). `step_seed` and `scaled_loss`, the
training step shared with the command line's trainer, live in
`vib_flows.training_step` and are re-exported here.
"""

from vib_flows.models.latent import LatentVariableModel
from vib_flows.models.latent import SampleCounts
from vib_flows.models.latent import Signature
from vib_flows.models.vae import MAX_CHUNK_ROWS
from vib_flows.models.vae import VAE
from vib_flows.models.vib import VIB
from vib_flows.training_step import scaled_loss
from vib_flows.training_step import step_seed

__all__ = ["LatentVariableModel", "SampleCounts", "Signature", "VAE", "VIB",
           "MODEL_KINDS",
           "MAX_CHUNK_ROWS", "PRIOR_FLOW_LAYERS", "scaled_loss", "step_seed"]

MODEL_KINDS = ("vae", "vib")
PRIOR_FLOW_LAYERS = 2  # Layers of the "flow" prior (an invertible flow).

