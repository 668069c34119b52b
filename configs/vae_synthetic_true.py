"""configs/vae_synthetic.py with the decoder fixed to the true network.

Only the encoder (and a flow, if any) learns: test_exact_gap = exact
log p(x) - ELBO is the mean KL(q(z|x) || p(z|x)), the price of the
approximate posterior on the curved true posteriors of "synthetic:banana".
"""

from vib_flows.app import config_files


def get_config():
  config = config_files.sibling(__file__, "vae_synthetic")
  config.model.decoder = "true"
  return config
