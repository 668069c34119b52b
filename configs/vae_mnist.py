"""The flow VAE on binarized MNIST at Rezende & Mohamed 2015's MLP scale.

"Variational Inference with Normalizing Flows", Sec. 6.2: an MLP encoder and
decoder with one hidden layer of 400 units, 40 latent units, a Bernoulli
likelihood, the standard-normal prior, and a flow posterior (the paper's
planar flows with K = 80: -log p(x) <= 85.10 nats). The flows' parameters
come from the encoder (amortized, as in the paper and van den Berg et al.
2018).

Protocol, fitted to about 30 minutes of training per run without a flow on
2 CPU cores (15 to 30 minutes by machine; the flow rows 30 minutes to 4
hours). Run on 2 CPU cores (docs/results_mnist.md: numbers, epochs,
training times): no flow and 4 IAF layers with 3 seeds; planar K = 10 and
K = 80, RealNVP, orthogonal, Householder and triangular Sylvester with one,
all tested with K = 1000; K = 5000 only on the runs whose weights were
kept (one seed of five rows). The protocol:
  - data: dynamically binarized MNIST (training images re-drawn as
    Bernoulli(grey value) every epoch; validation and test drawn once),
    split 50 000 / 10 000 / 10 000 (validation: the last 10 000 images of
    the training file);
  - Adam 1e-3, batch 100, a linear KL warm-up over the first 10 epochs
    (the paper anneals over 10 000 updates), at most 200 epochs, early
    stopping after 30 epochs without a lower validation loss; the weights
    of the lowest validation loss are evaluated;
  - test -ELBO and -log p(x) with K = 5000 importance samples (Burda et al.
    2016), the papers' count.

The paper itself trains with RMSprop for 500 000 updates on a GPU; this
protocol is shorter. The data: "mnist" reads TensorFlow Datasets (a
download); offline, point it at the four IDX files:
--config.data.name=idx:/path/to/mnist.
"""

from vib_flows.app import config_files


def get_config():
  config = config_files.sibling(__file__, "default")
  config.data.name = "mnist"
  config.data.preprocess = "dynamic"
  config.data.validation_size = 10_000
  config.data.shuffle_buffer = 50_000
  config.model.likelihood = "bernoulli"
  config.model.latent_dim = 40
  config.model.encoder_hidden = (400,)
  config.model.decoder_hidden = (400,)
  config.model.context_dim = 64
  config.flow.name = "planar"
  config.flow.num_flows = 80
  config.flow.amortized = True
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.train.batch_size = 100
  config.train.num_epochs = 200
  config.train.early_stopping_patience = 30
  config.loss.warmup_steps = 10 * 500  # 10 epochs of 50 000 / 100 steps.
  config.train.image_summaries_every_epochs = 0
  config.eval.num_importance_samples = 5000
  config.eval.importance_chunk_size = 500
  # 50 images per evaluation batch: the amortized flows recompute their
  # per-image parameters (for Sylvester flows, QRs) in every chunk of 8192
  # rows, so their cost grows with the batch; with 4 orthogonal Sylvester
  # flows B = 50 evaluates 1.7x faster than B = 500, with no flow or planar
  # flows as fast (`python -m experiments.research.eval_batch_size`). The
  # estimates do not depend on it.
  config.eval.batch_size = 50
  return config
