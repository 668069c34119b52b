"""Alemi et al. 2017, "Deep Variational Information Bottleneck", Sec. 4.1.

MNIST, encoder 784-1024-1024, latent 256, softmax classifier on z, beta =
1e-3, 12 posterior samples averaged at test time (reported test error 1.13%).
Adam lr 1e-4, batch 100, 200 epochs. Needs TFDS (internet); not run here.
"""

from vib_flows import config_files


def get_config():
  config = config_files.sibling(__file__, "default")
  config.data.name = "mnist"
  config.data.preprocess = "scale"
  config.model.kind = "vib"
  config.model.latent_dim = 256
  config.model.encoder_hidden = (1024, 1024)
  config.model.decoder_hidden = ()
  config.loss.beta = 1e-3
  config.optimizer.learning_rate = 1e-4
  config.train.batch_size = 100
  config.train.num_epochs = 200
  config.eval.vib_num_samples = 12
  return config
