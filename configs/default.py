"""Default configuration: every field, documented. Experiment files override it.

Run: python -m vib_flows.main --config=configs/default.py --workdir=/tmp/run
Override a field: --config.SECTION.FIELD=VALUE (the config is locked: a
misspelt field is refused). Fields users and other code rely on
(docs/design.md): data.name, model.kind, model.latent_dim, flow.name,
flow.num_flows, flow.amortized, loss.beta, train.num_epochs,
train.batch_size, runtime.strategy, runtime.virtual_cpu_devices,
eval.num_importance_samples, export.base_dir.

The defaults are a small VAE that trains offline in a minute on a CPU; each
experiment file (configs/*.py) sets what its experiment needs.
"""

import ml_collections


def get_config():
  """Returns the default config: a VAE on the offline 8x8 digits."""
  config = ml_collections.ConfigDict()
  # Seeds the weights, the data order of every epoch and every posterior
  # sample, so a run (and a resumed run) repeats exactly.
  config.seed = 0

  # ----------------------------------------------------------------- data
  config.data = ml_collections.ConfigDict()
  # "digits" (scikit-learn's bundled 8x8 digits, offline), "npz:/path.npz"
  # (arrays x_train, y_train, x_test, y_test, optional x_validation,
  # y_validation), "idx:/path/to/folder" (the four IDX files of MNIST,
  # Fashion-MNIST or KMNIST, plain or .gz), "synthetic:banana" /
  # "synthetic:bimodal" / "synthetic:ring" (binary data of a known 2-D
  # latent model, fresh training draws each epoch, exact log p(x)), or a
  # TensorFlow Datasets name ("mnist", "binarized_mnist"). The digits need
  # no download, hence the default.
  config.data.name = "digits"
  # How pixels reach the likelihood: "levels" (integer intensities), "scale"
  # (to [0, 1]), binarization "static" (one fixed Bernoulli(grey value) draw
  # of every split), "dynamic" (training images re-drawn every epoch,
  # validation and test drawn once) or "threshold" (at 0.5); "auto" picks
  # the one model.likelihood needs (levels for categorical, scale for
  # gaussian, static for bernoulli).
  config.data.preprocess = "auto"
  # Seed of the fixed Bernoulli draws of "static" and of the evaluation
  # splits of "dynamic" (the training draws follow config.seed).
  config.data.binarization_seed = 0
  # Number of label classes; labels must be 0..num_classes-1 (a label outside
  # is refused, naming its split and row). 0: the source's own count (digits,
  # TFDS), else the largest training label + 1, refused for a VIB when some
  # class below it has no training example (a stray label 50 in a 10-class
  # npz would make 51 classes): set it to train with empty classes.
  config.data.num_classes = 0
  # Examples held out from the end of train as validation, for npz/TFDS data
  # without a validation split (0: validate on the test set).
  config.data.validation_size = 0
  config.data.tfds_data_dir = ""  # TFDS data_dir ("": TFDS' own default).
  # Shuffle buffer of the tf.data pipeline: 10 000 holds the whole digits
  # training split and a sixth of MNIST's.
  config.data.shuffle_buffer = 10_000
  # Keep the decoded data set in memory: every data set used here fits.
  config.data.cache = True

  # ---------------------------------------------------------------- model
  config.model = ml_collections.ConfigDict()
  config.model.kind = "vae"  # "vae" (models p(x|z)) or "vib" (p(y|z)).
  # Size of z: 16 is the 'Deep Generative Modeling' book's digits setup.
  config.model.latent_dim = 16
  # Encoder MLP widths; 256-256 as the book's digits setup.
  config.model.encoder_hidden = (256, 256)
  # Generator (VAE) or classifier (VIB) MLP widths, as the encoder.
  config.model.decoder_hidden = (256, 256)
  # Encoder and VAE decoder networks: "mlp" (the MLPs of encoder_hidden and
  # decoder_hidden) or "gated_conv" (van den Berg et al. 2018's gated
  # convolutional MNIST encoder and decoder, vib_flows.gated_conv: 28x28x1
  # images, a Bernoulli VAE; encoder_hidden, decoder_hidden and activation
  # are unused; context_dim = 256 passes the encoder's 256 features as the
  # flows' context).
  config.model.network = "mlp"
  # VAE decoder: "learned" (an MLP of decoder_hidden) or "true" (the fixed
  # true network of a synthetic data set: only the posterior is learned).
  config.model.decoder = "learned"
  # Hidden activation of every MLP (a Keras name, e.g. "leaky_relu").
  config.model.activation = "relu"
  # VAE likelihood: "categorical" (num_levels pixel intensities, the digits'
  # 17 levels exactly), "bernoulli" (binary pixels) or "gaussian". The VIB
  # always uses categorical labels.
  config.model.likelihood = "categorical"
  # Intensity levels of the categorical likelihood: 17 for the digits (0..16),
  # 256 for 8-bit images.
  config.model.num_levels = 17
  # Gaussian likelihood: a fixed scale, or 0 for a learned one.
  config.model.gaussian_scale = 0.0
  # Floor of the posterior's softplus scale: keeps log q finite.
  config.model.min_scale = 1e-4
  # The posterior's scale is softplus(a + scale_shift) + min_scale: Alemi et
  # al. 2017 use -5, so that q(z|x) starts narrow (softplus(-5) = 0.0067).
  config.model.scale_shift = 0.0
  # Feed the encoder 2x - 1 (inputs in [-1, 1], as Alemi et al. 2017)
  # instead of x in [0, 1]; data and serving inputs stay in [0, 1].
  config.model.centered_inputs = False
  # Prior p(z): "standard_normal", "mixture" (a learned mixture of diagonal
  # Gaussians) or "flow" (a learned flow over a standard normal).
  config.model.prior = "standard_normal"
  # Components of the mixture prior: 10, as the MoG prior of Tomczak &
  # Welling 2018.
  config.model.prior_components = 10
  # Width of the encoder features that amortized flows compute their
  # parameters from.
  config.model.context_dim = 64

  # ----------------------------------------------------------------- flow
  config.flow = ml_collections.ConfigDict()
  # One of vib_flows.flows.names(): planar, radial, sylvester_orthogonal,
  # sylvester_householder, sylvester_triangular, iaf, maf, real_nvp, spline,
  # or a flow registered by flow.module. Used only when num_flows > 0.
  config.flow.name = "planar"
  # Importable module(s), comma-separated, imported before flow.name is looked
  # up: a flow defined outside vib_flows registers itself there with
  # @vib_flows.flows.register("name"). "" = the built-in flows only.
  config.flow.module = ""
  # Constructor options of the flow, passed as they are and checked against
  # its signature (e.g. num_bins, bound of spline). A config file adds
  # entries; the command line can then set them (--config.flow.options.K=V).
  config.flow.options = ml_collections.ConfigDict()
  # Flow layers after the Gaussian; 0 (a plain diagonal-Gaussian posterior)
  # is the baseline every flow is compared with.
  config.flow.num_flows = 0
  # True: the flows' parameters are computed per example from the encoder's
  # features; False: one set of parameters for every example.
  config.flow.amortized = False
  # Shared fields, passed to the flows whose constructor takes them:
  # Conditioner width of iaf/maf/real_nvp/spline: 64, small beside the
  # 256-wide encoder and decoder.
  config.flow.hidden_units = 64
  # Orthonormal columns M of an orthogonal Sylvester flow (0: latent_dim).
  config.flow.num_ortho_vectors = 0
  # Householder reflections per Householder Sylvester flow (4, as
  # configs/vae_digits.py, whose flow was chosen by validation).
  config.flow.num_householder = 4
  # IAF gate bias: sigma = sigmoid(s + forget_bias) starts at sigmoid(2) = 0.88
  # per layer (Kingma et al. 2016 use 1-2); larger starts nearer the identity
  # (docs/results.md measures 0, 1, 2 and 4).
  config.flow.forget_bias = 2.0

  # ----------------------------------------------------------------- loss
  config.loss = ml_collections.ConfigDict()
  # Weight of the KL term: 1 is the ELBO; for the VIB, the bottleneck beta.
  config.loss.beta = 1.0
  # beta rises linearly from 0 over these steps (KL warm-up); 0: off, as the
  # digits protocol chosen by validation has none.
  config.loss.warmup_steps = 0
  # Encoder gradient: "pathwise" (reparameterization; far less variance,
  # docs/estimators.md) or "score_function" (REINFORCE).
  config.loss.estimator = "pathwise"
  # Decay of the score function's moving-average baseline of the cost.
  config.loss.baseline_decay = 0.99
  # Monte Carlo KL even where a closed form exists (tests and studies).
  config.loss.force_monte_carlo_kl = False
  # Posterior samples per example in training: one, as in the papers.
  config.loss.num_samples = 1

  # ------------------------------------------------------------ optimizer
  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"  # "adam", "adamax", "sgd", "rmsprop".
  # 1e-3, Adam's usual rate; experiment files set their own.
  config.optimizer.learning_rate = 1e-3
  # Clip the global-batch gradient to this global norm (0: off).
  config.optimizer.clipnorm = 0.0
  # Adam/Adamax first-moment decay (Alemi et al. 2017 use 0.5).
  config.optimizer.beta_1 = 0.9
  # Staircase decay: the rate is multiplied by decay_rate every
  # decay_every_epochs epochs (0: a constant rate). Alemi et al. 2017: 0.97
  # every 2 epochs.
  config.optimizer.decay_rate = 1.0
  config.optimizer.decay_every_epochs = 0

  # ---------------------------------------------------------------- train
  config.train = ml_collections.ConfigDict()
  # Epoch limit; with early_stopping_patience the run usually stops before.
  config.train.num_epochs = 50
  # Global batch, split over the replicas (so it must divide evenly).
  config.train.batch_size = 100
  # Steps run in one tf.function call, with no host synchronisation between
  # them (progress, non-finite checks and checkpoints act between calls). It
  # changes no number; 50: one host synchronisation per 50 steps.
  config.train.steps_per_call = 50
  # Checkpoints (with the best weights so far) every N epochs and at the end;
  # 0: only at the end and every checkpoint_every_steps. 10: on the digits a
  # checkpoint every 10 epochs is about 3.5% of a run (55-150 ms each,
  # `python -m experiments.research.whole_run_phases`, docs/performance.md).
  config.train.checkpoint_every_epochs = 10
  # Also mid-epoch, every N steps (0: off), for long epochs.
  config.train.checkpoint_every_steps = 0
  # VAE reconstructions and samples in TensorBoard every N epochs and at the
  # end.
  config.train.image_summaries_every_epochs = 10
  # Stop after this many epochs without a lower validation loss (0: off).
  config.train.early_stopping_patience = 0
  # XLA-compile the training step: faster for the MNIST-sized models and the
  # VIB (docs/performance.md); the digits VAE turns it off.
  config.train.jit_compile = True
  # Allow reusing a workdir that holds a run of another config.
  config.train.overwrite = False
  # Exponential moving average of the weights, w_ema <- d w_ema + (1 - d) w
  # after every step (0: off). With it on, validation, the kept best
  # weights, the test metrics and the export use the averaged weights; the
  # averages are saved in every checkpoint. Alemi et al. 2017: 0.999.
  config.train.ema_decay = 0.0
  # Evaluate and export the weights of the best validation loss (True) or the
  # last weights (False: when the validation split is the test split, e.g.
  # data.validation_size = 0, picking by it would select on the test set).
  config.train.keep_best = True

  # ----------------------------------------------------------------- eval
  config.eval = ml_collections.ConfigDict()
  # K of the importance-weighted estimate of the test log p(x) (Burda et al.
  # 2016): 5000, the papers' value, within 0.05 nats of K = 20 000 on the
  # digits (docs/results.md).
  config.eval.num_importance_samples = 5000
  # Importance samples per chunk: bounds the evaluation's memory whatever K.
  config.eval.importance_chunk_size = 500
  # Examples per evaluation batch.
  config.eval.batch_size = 500
  # Posterior samples the VIB averages p(y|z) over at test time: 12, as
  # Alemi et al. 2017.
  config.eval.vib_num_samples = 12
  # VIB only: the test accuracy on fast gradient sign (FGSM, Goodfellow et
  # al. 2015) examples of each L-infinity budget eps in [0, 1] (grey-value
  # units), as Alemi et al. 2017 report it: metrics test_fgsm_accuracy_eps{eps}
  # (vib_flows.adversarial). () = off; e.g. (0.1, 0.2, 0.3).
  config.eval.fgsm_epsilons = ()
  # VIB only: the test accuracy on projected gradient descent examples
  # (Madry et al. 2018) of each budget: pgd_steps signed steps of
  # 2.5 eps / pgd_steps, projected into the budget. The stronger attack: an
  # accuracy far above it under FGSM is gradient masking. Metrics
  # test_pgd_accuracy_eps{eps} and test_pgd_steps. () = off.
  config.eval.pgd_epsilons = ()
  config.eval.pgd_steps = 20
  # PGD's starts per example: 1 = from x; R > 1 = from x and from R - 1
  # uniform points of the budget, an example counted as robust only if no
  # start fools it (Madry et al. 2018). Metric test_pgd_restarts.
  config.eval.pgd_restarts = 1

  # -------------------------------------------------------------- runtime
  config.runtime = ml_collections.ConfigDict()
  # "default", "one_device", "mirrored" (all local GPUs),
  # "multi_worker_mirrored" (several machines, TF_CONFIG) or "tpu".
  config.runtime.strategy = "default"
  # Split the CPU into N logical devices (0: off): how the tests run the
  # mirrored strategy without GPUs.
  config.runtime.virtual_cpu_devices = 0
  # Threads of one op (a matrix product) and threads running independent ops
  # side by side; 0 = TensorFlow's choice (the number of cores). Applied by
  # `python -m vib_flows.main` before TensorFlow starts.
  config.runtime.intra_op_threads = 0
  config.runtime.inter_op_threads = 0
  # Compute in float16 (mixed_float16), keep every log-density and the loss
  # in float32.
  config.runtime.mixed_precision = False

  # --------------------------------------------------------------- export
  config.export = ml_collections.ConfigDict()
  config.export.enabled = True  # Export a SavedModel at the end of training.
  # Where the versions go: <base_dir>/<model name>/<N>/.
  config.export.base_dir = "saved_models"
  config.export.model_name = ""  # "": "<model.kind>_<data.name>".
  # K of the served log_likelihood signature: 100 decoder passes per example
  # keep a request cheap.
  config.export.num_importance_samples = 100
  # Most rows (examples) of one log_likelihood request; a larger one is
  # refused, saying to split it. Its time grows with rows x K: at K = 100,
  # 1000 rows hold a serving thread for about 10 s on a loaded 2-core
  # machine (docs/serving.md); its memory stays flat up to 8192 rows. Set
  # TF Serving's max_batch_size no higher.
  config.export.max_log_likelihood_rows = 1000
  # Write assets.extra/tf_serving_warmup_requests (TensorFlow Serving replays
  # them when it loads a version).
  config.export.warmup_requests = True
  return config
