"""Posterior, priors and likelihoods of the VAE and the VIB.

Built on TensorFlow Probability.

TFP 0.25's `tfp.layers` do not work with Keras 3, so the Keras layers here hold
the weights and return tensors; TFP distributions are built inside their methods
only to evaluate log-densities. Every log-density is float32, whatever the
compute dtype (mixed precision).

Posterior (Kingma & Welling 2014, "Auto-Encoding Variational Bayes"): a diagonal
Gaussian q0(z0|x) = N(mu(x), diag sigma(x)^2), sampled by reparameterization

    z0 = mu + sigma * eps,      eps ~ N(0, I),

from stateless random ops driven by an explicit seed (an integer tensor of shape
[2]), so that runs repeat and a SavedModel can sample in the C++ runtime. A flow
turns z0 into zK (Rezende & Mohamed 2015; van den Berg et al. 2018) and

    log qK(zK|x) = log q0(z0|x) - sum_k log|det df_k/dz_{k-1}|.

Names: the config's model.prior and model.likelihood name a registered class
(`prior_names()`, `likelihood_names()`; `make_prior`, `make_likelihood`), as
`vib_flows.flows.names()` does for the flows. `PRIORS` and `LIKELIHOODS` are
`vib_flows.registry.Registry`s, as the flows' registry is: sorted names, and
an unknown name or option refused with the valid ones listed.

Priors p(z): `StandardNormalPrior` (closed-form KL with the Gaussian posterior),
`MixturePrior` (learnable mixture of Gaussians), `FlowPrior` (an invertible flow
over a standard normal). Likelihoods p(x|z): `BernoulliLikelihood`,
`CategoricalLikelihood` (num_levels pixel intensities), `GaussianLikelihood`
(fixed or learned scale); p(y|z) for the VIB: `CategoricalLabels`.

Data representation reaching a likelihood: bernoulli: x in [0, 1] (binary);
categorical: integer levels 0..L-1 stored as float32; gaussian: x scaled to
[0, 1]. `likelihood.normalize(x)` maps it to the encoder's input scale and
`likelihood.validate(x)` refuses values outside the support.

Modules, one job each:
  posterior    the diagonal Gaussian q0(z0|x): stateless sampling, log-density,
               closed-form KL
  priors       the prior layers p(z) and `make_prior`
  likelihoods  the likelihood layers p(x|z), `make_likelihood`, and the VIB's
               p(y|z) (`CategoricalLabels`)
  support      numpy checks that data lie in a likelihood's support
  registry     the name registries `PRIORS`, `LIKELIHOODS` behind
               `prior_names`, `likelihood_names`
"""

from vib_flows.distributions import likelihoods
from vib_flows.distributions import posterior
from vib_flows.distributions import priors
from vib_flows.distributions import registry
from vib_flows.distributions import support

TensorLike = posterior.TensorLike
stateless_standard_normal = posterior.stateless_standard_normal
sample_diagonal_gaussian = posterior.sample_diagonal_gaussian
diagonal_gaussian = posterior.diagonal_gaussian
diagonal_gaussian_log_prob = posterior.diagonal_gaussian_log_prob
kl_diagonal_gaussians = posterior.kl_diagonal_gaussians
Prior = priors.Prior
StandardNormalPrior = priors.StandardNormalPrior
MixturePrior = priors.MixturePrior
FlowPrior = priors.FlowPrior
make_prior = priors.make_prior
standard_normal_log_prob = priors.standard_normal_log_prob
GAUSSIAN_MIN_SCALE = likelihoods.GAUSSIAN_MIN_SCALE
Likelihood = likelihoods.Likelihood
BernoulliLikelihood = likelihoods.BernoulliLikelihood
CategoricalLikelihood = likelihoods.CategoricalLikelihood
GaussianLikelihood = likelihoods.GaussianLikelihood
make_likelihood = likelihoods.make_likelihood
CategoricalLabels = likelihoods.CategoricalLabels
validate_labels = support.validate_labels
PRIORS = registry.PRIORS
LIKELIHOODS = registry.LIKELIHOODS
prior_names = registry.prior_names
likelihood_names = registry.likelihood_names
