"""The planar-flow VAE on binarized MNIST of Rezende & Mohamed 2015.

"Variational Inference with Normalizing Flows", Sec. 6.2.

Binarized MNIST, latent 40, planar flows (the paper's best, K = 80 flows:
-log p(x) ~ 85.10 nats), KL annealing (beta from 0.01 to 1 over 10 000
iterations in the paper; here linear from 0). Needs TFDS (internet) and a GPU
to run in reasonable time; not run on the development machine.
"""

from vib_flows import config_files


def get_config():
  config = config_files.sibling(__file__, "default")
  config.data.name = "binarized_mnist"
  config.model.likelihood = "bernoulli"
  config.model.latent_dim = 40
  config.model.encoder_hidden = (400, 400)
  config.model.decoder_hidden = (400, 400)
  config.flow.name = "planar"
  config.flow.num_flows = 80
  # The paper's flow parameters come from the encoder.
  config.flow.amortized = True
  config.loss.warmup_steps = 10_000  # The paper's 10 000 annealing iterations.
  config.optimizer.name = "rmsprop"
  config.optimizer.learning_rate = 1e-5
  config.train.batch_size = 100
  config.train.num_epochs = 500
  return config
