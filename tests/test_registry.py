"""One registry mechanism: flows, priors and likelihoods follow the same rules.

Each is a `vib_flows.registry.Registry`: sorted names, an unknown name refused
with the valid names listed, options read from the constructor and an unknown
option refused with the valid ones listed, a name taken by another class
refused.
"""

import importlib
import re

import keras
import pytest

from vib_flows import distributions
from vib_flows import flows
from vib_flows import registry
from vib_flows.flows import registry as flow_registry

# (registry, its public names function, builder arguments of a new object).
REGISTRIES = {
    "flow": (flow_registry.FLOWS, flows.names, {"dim": 2}),
    "prior": (distributions.PRIORS, distributions.prior_names,
              {"latent_dim": 2}),
    "likelihood": (distributions.LIKELIHOODS, distributions.likelihood_names,
                   {"event_shape": (3,)}),
}


@pytest.fixture(params=sorted(REGISTRIES))
def kind(request):
  return request.param


def test_every_registry_is_a_registry_of_its_kind(kind):
  names_registry, _, _ = REGISTRIES[kind]
  assert isinstance(names_registry, registry.Registry)
  assert names_registry.kind == kind
  # Messages name the base class by its public path.
  module, _, name = names_registry.base_name.rpartition(".")
  assert getattr(importlib.import_module(module), name) is names_registry.base


def test_names_are_sorted(kind):
  names_registry, public_names, _ = REGISTRIES[kind]
  names = list(public_names())
  assert names == sorted(names) == names_registry.names()
  assert len(names) >= 3
  for name in names:
    cls = names_registry.get_class(name)
    assert getattr(cls, names_registry.name_attribute) == name
    assert keras.saving.get_registered_object(
        keras.saving.get_registered_name(cls)) is cls


def test_unknown_name_is_refused_listing_the_valid_ones(kind):
  names_registry, public_names, _ = REGISTRIES[kind]
  message = re.escape(f"Unknown {kind} name 'nope'; valid names: "
                      f"{', '.join(public_names())}.")
  for lookup in (names_registry.get_class, names_registry.option_names,
                 lambda n: names_registry.check_options(n, [])):
    with pytest.raises(ValueError, match=message):
      lookup("nope")
  with pytest.raises(ValueError, match=rf"Unknown {kind} name \['a'\];"):
    names_registry.get_class(["a"])  # Unhashable: a list from a config.


def test_the_factories_refuse_unknown_names_listing_the_valid_ones():
  with pytest.raises(ValueError, match="valid names: iaf, maf, planar"):
    flows.get("nope", dim=2)
  with pytest.raises(ValueError, match="valid names: flow, mixture, "
                     "standard_normal"):
    distributions.make_prior("nope", 2)
  with pytest.raises(ValueError, match="valid names: bernoulli, categorical, "
                     "gaussian"):
    distributions.make_likelihood("nope", (3,))


def test_unknown_option_is_refused_naming_the_valid_ones(kind):
  names_registry, public_names, builder = REGISTRIES[kind]
  for name in public_names():
    valid = names_registry.option_names(name)
    assert not set(valid) & set(names_registry.builder_arguments)
    names_registry.check_options(name, [*valid, *builder, "name", "dtype"])
    message = (rf"{kind.capitalize()} '{name}' has no option\(s\) "
               rf"'colour'; valid options: {', '.join(valid) or 'none'}\.")
    with pytest.raises(ValueError, match=message):
      names_registry.check_options(name, ["colour", *valid])
    with pytest.raises(ValueError, match=message):
      names_registry.create(name, colour=1, **builder)


@pytest.mark.parametrize("kind_name,options,valid", [
    ("flow/spline", {"num_binz": 4}, "hidden_units, num_bins, bound"),
    ("prior/mixture", {"num_component": 3}, "num_components"),
    ("prior/flow", {"flow": "maf"}, "flow_name, num_flows, flow_kwargs"),
    ("prior/standard_normal", {"num_components": 3}, "none"),
    ("likelihood/gaussian", {"sigma": 0.1}, "scale"),
    ("likelihood/categorical", {"levels": 4}, "num_levels"),
])
def test_create_refuses_what_the_constructor_does_not_take(
    kind_name, options, valid):
  kind, name = kind_name.split("/")
  names_registry, _, builder = REGISTRIES[kind]
  with pytest.raises(ValueError, match=f"valid options: {valid}\\."):
    names_registry.create(name, **builder, **options)


def test_the_options_of_the_distributions_are_their_constructors():
  assert distributions.PRIORS.option_names("mixture") == ["num_components"]
  assert distributions.PRIORS.option_names("flow") == [
      "flow_name", "num_flows", "flow_kwargs"]
  assert distributions.PRIORS.option_names("standard_normal") == []
  assert distributions.LIKELIHOODS.option_names("categorical") == [
      "num_levels"]
  assert distributions.LIKELIHOODS.option_names("gaussian") == ["scale"]
  prior = distributions.PRIORS.create("mixture", 2, num_components=3)
  assert prior.num_components == 3 and prior.name_ == "mixture"


def test_a_name_taken_by_another_class_is_refused(kind):
  names_registry, public_names, _ = REGISTRIES[kind]
  taken = public_names()[0]
  before = names_registry.get_class(taken)
  other = type("Other", (names_registry.base,), {})
  with pytest.raises(ValueError, match=f"{kind.capitalize()} name '{taken}' "
                     "is already registered to"):
    names_registry.register(taken)(other)
  with pytest.raises(TypeError, match="register a subclass of "
                     + re.escape(names_registry.base_name)):
    names_registry.register("not_a_subclass")(object)
  assert names_registry.get_class(taken) is before
  assert "not_a_subclass" not in names_registry.names()


class _Base:
  """A toy base class: Keras registers classes with a get_config."""

  def __init__(self, size, name=None, **kwargs):
    del kwargs
    self.size, self.name = size, name

  def get_config(self):
    return {"size": self.size}


def _toy_registry():
  toys = registry.Registry("toy", _Base, name_attribute="toy_name",
                           builder_arguments=("size",),
                           unknown_name_hint=" Import its module.",
                           removed_options={"old": " Use 'new'."})

  @toys.register("b_toy", package="vib_flows_tests")
  class ToyMiddle(_Base):  # pylint: disable=unused-variable

    def __init__(self, size, width=1, *, new=0, **kwargs):
      super().__init__(size, **kwargs)
      self.width, self.new = width, new

  @toys.register("a_toy", package="vib_flows_tests")
  class ToyLeaf(ToyMiddle):  # pylint: disable=unused-variable

    def __init__(self, size, depth=2, **kwargs):
      super().__init__(size, **kwargs)
      self.depth = depth

  return toys


def test_options_are_the_constructor_arguments_up_to_the_base():
  toys = _toy_registry()
  assert toys.names() == ["a_toy", "b_toy"]
  assert "a_toy" in toys and "c_toy" not in toys
  assert toys.option_names("a_toy") == ["depth", "width", "new"]
  assert toys.option_names("b_toy") == ["width", "new"]
  toy = toys.create("a_toy", 5, depth=3, new=1, name="t")
  assert (toy.size, toy.depth, toy.width, toy.new) == (5, 3, 1, 1)
  assert toy.name == "t" and type(toy).toy_name == "a_toy"
  assert keras.saving.get_registered_name(type(toy)) == (
      "vib_flows_tests>ToyLeaf")
  assert toys.filter_options("b_toy", {"width": 2, "depth": 3}) == {
      "width": 2}


def test_the_hints_follow_the_refusals():
  toys = _toy_registry()
  with pytest.raises(ValueError, match=r"^Unknown toy name 'c_toy'; valid "
                     r"names: a_toy, b_toy\. Import its module\.$"):
    toys.get_class("c_toy")
  with pytest.raises(ValueError, match=r"^Toy 'b_toy' has no option\(s\) "
                     r"'old'; valid options: width, new\. Use 'new'\.$"):
    toys.create("b_toy", 1, old=2)


def test_registering_the_same_class_again_replaces_it():
  toys = _toy_registry()
  first = toys.get_class("a_toy")
  again = type(first.__name__, (_Base,), {"__qualname__": first.__qualname__})
  assert toys.register("a_toy", package="vib_flows_tests")(again) is again
  assert toys.get_class("a_toy") is again
