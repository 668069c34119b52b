"""Tiny runs for tests: two epochs on the digits, small nets, few samples."""

from vib_flows.app import config_files


def get_config():
  config = config_files.sibling(__file__, "default")
  config.model.latent_dim = 4
  config.model.encoder_hidden = (32,)
  config.model.decoder_hidden = (32,)
  config.model.context_dim = 8
  config.flow.num_flows = 2
  config.flow.hidden_units = 16
  config.train.num_epochs = 2
  config.train.batch_size = 100
  config.eval.num_importance_samples = 20
  config.eval.importance_chunk_size = 10
  config.eval.vib_num_samples = 4
  config.export.num_importance_samples = 5
  config.train.jit_compile = False  # Compiling costs more than 2 tiny epochs.
  return config
