"""Variational information bottleneck with an IAF posterior on the 8x8 digits.

Alemi et al. 2017's objective, CE + beta * KL, with 12 posterior samples
averaged at test time; offline, a few minutes on 2 CPU cores.
"""

from vib_flows import config_files


def get_config():
  config = config_files.sibling(__file__, "default")
  config.model.kind = "vib"
  config.model.latent_dim = 16
  config.model.decoder_hidden = (256,)
  config.data.preprocess = "scale"
  config.flow.name = "iaf"
  config.flow.num_flows = 2
  config.flow.amortized = True
  config.loss.beta = 1e-3
  config.train.num_epochs = 60
  config.train.early_stopping_patience = 15
  return config
