"""Alemi et al. 2017, "Deep Variational Information Bottleneck", Sec. 4.1.

MNIST, all 60 000 training images (no validation split: the weights of the
last epoch are evaluated, never picked on the test set), encoder
784-1024-1024 (ReLU) to a K = 256 Gaussian posterior whose scale is
softplus(rho - 5), a softmax classifier (logistic regression) on z, beta =
1e-3, the standard-normal prior, one posterior sample per training example
and 12 averaged at test. The recipe of the paper and its public demo:
inputs in [-1, 1], Adam with beta_1 = 0.5, learning rate 1e-4 decayed by
0.97 every 2 epochs, batch 100, an exponential moving average of the
weights (decay 0.999) used for evaluation and export. The paper trains 200
epochs and reports 1.13% test error.

The data: "mnist" reads TensorFlow Datasets (a download); offline, point it
at the four IDX files: --config.data.name=idx:/path/to/mnist.
docs/results_mnist.md gives what was run on 2 CPU cores (the epochs there)
and the deterministic baseline, trained with the same network and recipe
(no noise, beta = 0).
"""

from vib_flows.app import config_files


def get_config():
  config = config_files.sibling(__file__, "default")
  config.data.name = "mnist"
  config.data.preprocess = "scale"
  config.data.validation_size = 0
  config.data.shuffle_buffer = 60_000
  config.model.kind = "vib"
  config.model.latent_dim = 256
  config.model.encoder_hidden = (1024, 1024)
  config.model.decoder_hidden = ()
  config.model.scale_shift = -5.0
  config.model.centered_inputs = True
  config.loss.beta = 1e-3
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-4
  config.optimizer.beta_1 = 0.5
  config.optimizer.decay_rate = 0.97
  config.optimizer.decay_every_epochs = 2
  config.train.batch_size = 100
  config.train.num_epochs = 200
  config.train.ema_decay = 0.999
  config.train.keep_best = False
  config.train.image_summaries_every_epochs = 0
  config.eval.vib_num_samples = 12
  return config
