"""The name registries of the priors and likelihoods (`model.prior`, ...).

`PRIORS` and `LIKELIHOODS` are `vib_flows.registry.Registry`s, with the
rules of the flows' registry: a class registers with `PRIORS.register(name)`
or `LIKELIHOODS.register(name)` (a class decorator, which also registers it
for Keras serialization), names are sorted, and an unknown name or option is
refused with the valid ones listed.
"""

from vib_flows.distributions.likelihoods import LIKELIHOODS
from vib_flows.distributions.likelihoods import likelihood_names
from vib_flows.distributions.priors import PRIORS
from vib_flows.distributions.priors import prior_names

__all__ = ["LIKELIHOODS", "PRIORS", "likelihood_names", "prior_names"]
