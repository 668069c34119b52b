"""The Sylvester-flow VAE on binarized MNIST of van den Berg et al. 2018.

"Sylvester Normalizing Flows for Variational Inference" (UAI): their gated
convolutional encoder and decoder (model.network = "gated_conv",
`vib_flows.gated_conv`), latent 64, 16 amortized orthogonal Sylvester flows
with M = 32 orthogonal vectors, whose parameters are linear maps of the
encoder's 256 features (context_dim = 256; reported -ELBO 83.32 nats),
Adamax lr 5e-4, batch 100, KL warm-up over the first 100 epochs, at most
2000 epochs, early stopping after 100 epochs without improvement.

Data: "binarized_mnist" reads TensorFlow Datasets (a download): the fixed
binarization (Larochelle's .amat files) that the paper's code reads, split
50 000 / 10 000 / 10 000. On a machine without TFDS downloads, point it at
the four IDX files of MNIST and pick a binarization:
--config.data.name=idx:/path/to/mnist --config.data.preprocess=static
(one fixed draw, as the paper's data; another draw than theirs) or
--config.data.preprocess=dynamic; data.validation_size = 10 000 then holds
out the last 10 000 training images for validation (TFDS' binarized_mnist
has its own validation split and ignores it, with a warning).

What was run here: the smoke test (tests/test_gated_conv.py trains a small
gated-conv VAE a few steps) and the time per training epoch of this config
with the package's trainer and XLA on random binary 28x28 data
(python -m experiments.research.gated_conv_epoch_time): 2.2 s per step of
100, 18 minutes per epoch of 50 000 images on 2 CPU cores (AMD EPYC) shared
with other runs (load average about 6), TF 2.21, 2026-12-06; 100 epochs of
warm-up alone would take 30 hours. The paper's table needs a GPU and was not
run here.
"""

from vib_flows.app import config_files


def get_config():
  config = config_files.sibling(__file__, "default")
  config.data.name = "binarized_mnist"
  config.data.validation_size = 10_000  # For idx: / npz: data (see above).
  config.data.shuffle_buffer = 50_000
  config.model.likelihood = "bernoulli"
  config.model.network = "gated_conv"
  config.model.latent_dim = 64
  config.model.context_dim = 256  # The encoder's features themselves.
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
