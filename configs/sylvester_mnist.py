"""The Sylvester-flow VAE on binarized MNIST of van den Berg et al. 2018.

"Sylvester Normalizing Flows for Variational Inference".

Binarized MNIST, latent 64, amortized orthogonal Sylvester flows (16 flows,
M = 32 orthogonal vectors: reported -ELBO 83.32 nats), Adamax lr 5e-4, batch
100, KL warm-up over the first 100 epochs, early stopping after 100 epochs
without improvement. Needs TFDS (internet) and a GPU; not run here.
"""

from vib_flows import config_files


def get_config():
  config = config_files.sibling(__file__, "default")
  config.data.name = "binarized_mnist"
  config.model.likelihood = "bernoulli"
  config.model.latent_dim = 64
  config.model.encoder_hidden = (300, 300)
  config.model.decoder_hidden = (300, 300)
  config.model.context_dim = 256
  config.flow.name = "sylvester_orthogonal"
  config.flow.num_flows = 16
  config.flow.num_ortho_vectors = 32
  config.flow.amortized = True
  config.optimizer.name = "adamax"
  config.optimizer.learning_rate = 5e-4
  config.train.batch_size = 100
  config.train.num_epochs = 2000
  config.train.early_stopping_patience = 100
  config.loss.warmup_steps = 100 * 500  # 100 epochs of 50 000 / 100 steps.
  return config
