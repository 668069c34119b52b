"""Variational information bottleneck with an IAF posterior on the 8x8 digits.

Alemi et al. 2017's objective, CE + beta * KL, with 12 posterior samples
averaged at test time; offline, a few minutes on 2 CPU cores.
"""

from vib_flows.app import config_files


def get_config():
  config = config_files.sibling(__file__, "default")
  config.model.kind = "vib"
  config.model.latent_dim = 16
  config.model.decoder_hidden = (256,)  # One hidden layer of classifier.
  config.data.preprocess = "scale"  # Grey values in [0, 1] for the encoder.
  config.flow.name = "iaf"
  config.flow.num_flows = 2
  config.flow.amortized = True
  # Alemi et al. 2017's value; docs/results.md sweeps 1e-4 to 1e-1.
  config.loss.beta = 1e-3
  # Up to 60 epochs, stopped early on the validation loss: the best epochs
  # are 33-57 (docs/results.md).
  config.train.num_epochs = 60
  config.train.early_stopping_patience = 15
  return config
