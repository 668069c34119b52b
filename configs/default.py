"""Default configuration: every field, documented. Experiment files override it.

Run: python -m vib_flows.main --config=configs/default.py --workdir=/tmp/run
Fields users and other code rely on (docs/design.md): data.name, model.kind,
model.latent_dim, flow.name, flow.num_flows, flow.amortized, loss.beta,
train.num_epochs, train.batch_size, runtime.strategy,
runtime.virtual_cpu_devices, eval.num_importance_samples, export.base_dir.
"""

import ml_collections


def get_config():
  """Returns the default config: a VAE on the offline 8x8 digits."""
  config = ml_collections.ConfigDict()
  config.seed = 0  # Seeds weights, data order and every posterior sample.

  # ----------------------------------------------------------------- data
  config.data = ml_collections.ConfigDict()
  # "digits" (scikit-learn's bundled 8x8 digits, offline), "npz:/path.npz"
  # (arrays x_train, y_train, x_test, y_test, optional x_validation,
  # y_validation), "synthetic:banana" / "synthetic:bimodal" /
  # "synthetic:ring" (binary data of a known 2-D latent model, fresh training
  # draws each epoch, exact log p(x)), or a TensorFlow Datasets name ("mnist",
  # "binarized_mnist").
  config.data.name = "digits"
  # How pixels reach the likelihood: "auto" picks from model.likelihood
  # ("levels" for categorical, "scale" for gaussian, "static" binarization
  # for bernoulli); or "levels", "scale", "static", "dynamic".
  config.data.preprocess = "auto"
  config.data.validation_size = 0  # For npz/TFDS without a validation split:
  # examples held out from the end of train (0: use the test set).
  config.data.tfds_data_dir = ""  # TFDS data_dir ("" = TFDS default).
  config.data.shuffle_buffer = 10_000
  config.data.cache = True  # Cache the decoded data set in memory.

  # ---------------------------------------------------------------- model
  config.model = ml_collections.ConfigDict()
  config.model.kind = "vae"  # "vae" (p(x|z)) or "vib" (p(y|z)).
  config.model.latent_dim = 16
  config.model.encoder_hidden = (256, 256)  # Encoder MLP widths.
  config.model.decoder_hidden = (256, 256)  # Generator / classifier widths.
  # VAE decoder: "learned" (an MLP of decoder_hidden) or "true" (the fixed
  # true network of a synthetic data set: only the posterior is learned).
  config.model.decoder = "learned"
  config.model.activation = "relu"
  # VAE likelihood: "categorical" (num_levels pixel intensities),
  # "bernoulli" (binary pixels) or "gaussian". VIB always uses categorical
  # labels.
  config.model.likelihood = "categorical"
  # Intensity levels (17 for digits, 256 for 8-bit).
  config.model.num_levels = 17
  # Gaussian likelihood: fixed scale, 0 = learned.
  config.model.gaussian_scale = 0.0
  config.model.min_scale = 1e-4  # Floor of the posterior's softplus scale.
  # Prior p(z): "standard_normal", "mixture" (learnable mixture of Gaussians)
  # or "flow" (a flow over a standard normal).
  config.model.prior = "standard_normal"
  config.model.prior_components = 10  # Mixture prior components.
  config.model.context_dim = 64  # Encoder features fed to amortized flows.

  # ----------------------------------------------------------------- flow
  config.flow = ml_collections.ConfigDict()
  # One of vib_flows.flows.names(): planar, radial, sylvester_orthogonal,
  # sylvester_householder, sylvester_triangular, iaf, maf, real_nvp, spline,
  # or a flow registered by flow.module.
  config.flow.name = "planar"
  # Importable module(s), comma-separated, imported before flow.name is looked
  # up: a flow defined outside vib_flows registers itself there with
  # @vib_flows.flows.register("name"). "" = the built-in flows only.
  config.flow.module = ""
  # Constructor options of the flow, passed as they are and checked against
  # its signature (e.g. num_bins, bound of spline). A config file adds
  # entries; the command line can then set them (--config.flow.options.K=V).
  config.flow.options = ml_collections.ConfigDict()
  config.flow.num_flows = 0  # 0: plain diagonal-Gaussian posterior.
  config.flow.amortized = False  # Parameters from the encoder (per example).
  # Shared fields, passed to the flows whose constructor takes them:
  # Conditioner width for iaf/maf/real_nvp/spline.
  config.flow.hidden_units = 64
  config.flow.num_ortho_vectors = 0  # Sylvester M (0: latent_dim).
  config.flow.num_householder = 4  # Householder reflections per Sylvester flow.
  # IAF gate bias: sigma = sigmoid(s + forget_bias) starts at sigmoid(2) = 0.88
  # per layer (Kingma et al. 2016 use 1-2); larger starts nearer the identity.
  config.flow.forget_bias = 2.0

  # ----------------------------------------------------------------- loss
  config.loss = ml_collections.ConfigDict()
  config.loss.beta = 1.0  # Weight of the KL term (VIB: the bottleneck beta).
  config.loss.warmup_steps = 0  # beta rises linearly from 0 over these steps.
  config.loss.estimator = "pathwise"  # Or "score_function" (REINFORCE).
  config.loss.baseline_decay = 0.99  # Moving-average baseline (score function).
  # MC KL even where a closed form exists.
  config.loss.force_monte_carlo_kl = False
  config.loss.num_samples = 1  # Posterior samples per example in training.

  # ------------------------------------------------------------ optimizer
  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"  # "adam", "adamax", "sgd", "rmsprop".
  config.optimizer.learning_rate = 1e-3
  config.optimizer.clipnorm = 0.0  # Global-norm gradient clipping (0: off).

  # ---------------------------------------------------------------- train
  config.train = ml_collections.ConfigDict()
  config.train.num_epochs = 50
  config.train.batch_size = 100  # Global batch, split over the replicas.
  # Steps run in one tf.function call, with no host synchronisation between
  # them (progress, non-finite checks and checkpoints act between calls).
  config.train.steps_per_call = 50
  # Checkpoints (with the best weights so far) every N epochs and at the end;
  # 0: only at the end and every checkpoint_every_steps.
  config.train.checkpoint_every_epochs = 10
  # Also mid-epoch, every N steps (0: off).
  config.train.checkpoint_every_steps = 0
  # VAE reconstructions and samples in TensorBoard every N epochs and at the
  # end.
  config.train.image_summaries_every_epochs = 10
  config.train.early_stopping_patience = 0  # Epochs without val. gain (0: off).
  config.train.jit_compile = True  # XLA-compile the train step.
  config.train.overwrite = False  # Allow reusing a workdir of another config.

  # ----------------------------------------------------------------- eval
  config.eval = ml_collections.ConfigDict()
  # K of the IWAE estimate of log p(x).
  config.eval.num_importance_samples = 5000
  config.eval.importance_chunk_size = 500  # Samples per chunk (bounds memory).
  config.eval.batch_size = 500
  # Posterior samples averaged by VIB (Alemi 2017).
  config.eval.vib_num_samples = 12

  # -------------------------------------------------------------- runtime
  config.runtime = ml_collections.ConfigDict()
  # "default", "one_device", "mirrored", "multi_worker_mirrored", "tpu".
  config.runtime.strategy = "default"
  # Split the CPU into N logical devices.
  config.runtime.virtual_cpu_devices = 0
  # Threads of one op (a matrix product) and threads running independent ops
  # side by side; 0 = TensorFlow's choice (the number of cores). Applied by
  # `python -m vib_flows.main` before TensorFlow starts.
  config.runtime.intra_op_threads = 0
  config.runtime.inter_op_threads = 0
  # mixed_float16 compute, float32 densities.
  config.runtime.mixed_precision = False

  # --------------------------------------------------------------- export
  config.export = ml_collections.ConfigDict()
  config.export.enabled = True  # Export at the end of training.
  config.export.base_dir = "saved_models"
  config.export.model_name = ""  # "" = "<model.kind>_<data.name>".
  # K in the log_likelihood signature.
  config.export.num_importance_samples = 100
  # assets.extra/tf_serving_warmup_requests.
  config.export.warmup_requests = True
  return config
