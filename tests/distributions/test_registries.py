"""The prior and likelihood registries: every name builds its own class."""

import pytest

from vib_flows import distributions


@pytest.mark.parametrize("name", distributions.prior_names())
def test_every_prior_name_builds_its_own_class(name):
  prior = distributions.make_prior(name, latent_dim=2, num_components=3,
                                   num_flows=1)
  assert isinstance(prior, distributions.Prior)
  assert prior.name_ == name
  assert getattr(prior, "num_components", 3) == 3
  assert getattr(prior, "num_flows", 1) == 1
  assert prior.sample(4, [1, 2]).shape == (4, 2)


@pytest.mark.parametrize("name", distributions.likelihood_names())
def test_every_likelihood_name_builds_its_own_class(name):
  likelihood = distributions.make_likelihood(name, (3,), num_levels=5,
                                             gaussian_scale=0.5)
  assert isinstance(likelihood, distributions.Likelihood)
  assert likelihood.name_ == name
  assert getattr(likelihood, "num_levels", 5) == 5
  assert getattr(likelihood, "fixed_scale", 0.5) == 0.5

