"""One home per name: the prior and likelihood registries and the name check."""

import pytest

from tests import helpers
from vib_flows import distributions
from vib_flows import fields
from vib_flows.app import config_checks


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


def test_config_checks_ask_the_registries():
  config = helpers.config("test")
  config.model.prior = "laplace"
  with pytest.raises(ValueError, match="valid: " + ", ".join(
      distributions.prior_names())):
    config_checks.validate(config)
  config = helpers.config("test")
  config.model.likelihood = "poisson"
  with pytest.raises(ValueError, match="valid: " + ", ".join(
      distributions.likelihood_names())):
    config_checks.validate(config)


def test_check_choice_names_field_value_and_valid_ones():
  fields.check_choice("model.kind", "vae", ("vae", "vib"))
  with pytest.raises(ValueError,
                     match=r"Unknown model.kind 'gan'; valid: vae, vib\."):
    fields.check_choice("model.kind", "gan", ("vae", "vib"))
  assert fields.info_field({"num_classes": 3}, "num_classes") == 3
  assert fields.info_field(object(), "num_classes") is None
