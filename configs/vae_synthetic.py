"""VAE on synthetic binary data whose exact log p(x) is known (a 2-D latent).

`data.name = "synthetic:banana"`: x in {0,1}^64 from z ~ N(0, I_2) through a
fixed network whose true posteriors p(z|x) are curved (see
`vib_flows.data.synthetic`; also "synthetic:bimodal", "synthetic:ring"). A
fresh training set of 10000 is drawn each epoch, so the model cannot overfit;
the test set is fixed. The decoder is learned here; configs/
vae_synthetic_true.py fixes it to the true network, so that log p(x) - ELBO
is the cost of the posterior alone. About 2 minutes on 2 CPU cores, most of
it the test evaluation (K = 5000). docs/results_synthetic.md has the
results of every flow.
"""

from vib_flows.app import config_files


def get_config():
  config = config_files.sibling(__file__, "default")
  config.data.name = "synthetic:banana"
  config.model.likelihood = "bernoulli"
  config.model.latent_dim = 2
  # Small networks: a 2-D latent and 64 binary pixels need no more.
  config.model.encoder_hidden = (64, 64)
  config.model.decoder_hidden = (64, 64)
  config.model.decoder = "learned"
  config.flow.num_flows = 0  # A diagonal Gaussian posterior.
  # 100 steps of fresh data each; the benchmark's sweeps pass --epochs=30,
  # since every flow still improves at 10 (docs/results_synthetic.md).
  config.train.num_epochs = 10
  return config
