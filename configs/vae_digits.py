"""VAE with Sylvester flows on the offline 8x8 digits: the README's main job.

The 'Deep Generative Modeling' book's digits setup (Tomczak 2022): 17-level
categorical likelihood, latent 16, hidden 256; split 1000/350/447.

Every choice below was made on the validation split, never on test numbers.
The training protocol (`python -m experiments.sweep --sweep=digits_protocol`,
docs/results.md): the book code's protocol (Adamax 1e-3, batch 64, no KL
warm-up, LeakyReLU, up to 1000 epochs, patience 20), then one change at a
time, then the helpful changes two at a time; the book's protocol with
learning rate 3e-3 and batch 32 has the lowest mean over 3 seeds. Then the
posterior and the prior among every configuration run under that protocol
(no flow and seven flows, `--sweep=vae_digits`; the standard normal, a
learned mixture of Gaussians and a flow prior, each with and without a flow,
`--sweep=digits_priors`): a learned mixture of 10 Gaussians as the prior
(Tomczak & Welling 2018) with 4 amortized Householder Sylvester flows (van
den Berg et al. 2018), each with 4 reflections. The criterion is the
validation -log p(x) (K = 1000 importance samples), the quantity the
comparisons report on the test set; in the protocol search it picks the
same protocol as the single-sample validation -ELBO that early stopping uses.
About 20-25 seconds of training on 2 CPU cores (docs/performance.md).
"""

from vib_flows.app import config_files


def get_config():
  config = config_files.sibling(__file__, "default")
  config.flow.name = "sylvester_householder"
  config.flow.num_flows = 4
  config.flow.amortized = True  # Parameters from the encoder's features.
  config.flow.num_householder = 4
  config.model.prior = "mixture"  # Learned means, scales and weights.
  config.model.prior_components = 10
  config.model.activation = "leaky_relu"  # Slope 0.2 for negative inputs.
  config.optimizer.name = "adamax"
  config.optimizer.learning_rate = 3e-3
  config.train.batch_size = 32
  config.loss.warmup_steps = 0
  # The book's limit and patience; early stopping ends every run long before
  # the limit (best epochs 25-40 in the protocol search).
  config.train.num_epochs = 1000
  config.train.early_stopping_patience = 20
  # K = 1000 importance samples for the test log p(x), so that the main job
  # takes about a minute: with these flows K = 5000 adds about 80 s, and
  # K = 1000 is 0.06-0.08 nats looser on digits VAEs
  # (experiments/research/iw_convergence.py, docs/results.md). The published
  # comparisons pass --importance_samples=5000.
  config.eval.num_importance_samples = 1000
  # Not compiled with XLA: compiling the step costs more than it saves over
  # about 1500 steps of batch 32; the whole run takes 1.35-1.55x as long with
  # XLA (median of 3 seeds, `python -m experiments.benchmark --cases=run`,
  # docs/performance.md).
  config.train.jit_compile = False
  # One thread per op: at batch 32 on 256-wide layers a matrix product is
  # too small to split across cores, and TensorFlow still runs independent
  # ops side by side on its inter-op threads. On 2 cores a no-flow run takes
  # 0.65-0.82x the time it takes with the default pools (median of 3 seeds,
  # `python -m experiments.benchmark --cases=run`, docs/performance.md).
  config.runtime.intra_op_threads = 1
  return config
