"""Name -> flow class registry behind `vib_flows.flows.get` and `names`.

A flow module registers its class with a decorator; nothing else in the
package needs to change for a new flow, and a user's own flow, defined outside
vib_flows, registers the same way:

    @vib_flows.flows.register("my_flow")
    class MyFlow(vib_flows.flows.Flow):
      def __init__(self, width: int = 8, **kwargs): ...

The flow's constructor arguments are its options: `get(name, **options)`
passes them straight to the constructor, after checking their names against
the constructor's signature, so that a misspelt option is refused with the
valid names listed. From the command line: `--config.flow.name=my_flow`,
`--config.flow.module=my_package.my_flows` (imported before the name is looked
up, see `import_modules`) and the entries of `config.flow.options`.

`FLOWS` is a `vib_flows.registry.Registry`, with the rules of the prior and
likelihood registries; the functions here are its methods. The flows that
condition on a coordinate order take no `reverse` option: `flows.make_stack`
puts a `flows.Reverse` layer between such layers.
"""

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
import importlib
from typing import Any, TypeVar

from vib_flows import registry
from vib_flows.flows import base

# Arguments set by the model that builds the flow, not options of a flow.
BUILDER_ARGUMENTS = ("dim", "context_dim", "amortized", "name", "dtype")

FlowClass = TypeVar("FlowClass", bound=type[base.Flow])

REVERSE_REMOVED = (
    " The 'reverse' option was removed: the layer conditioning on the "
    "reversed coordinate order is FlowStack([Reverse(), layer, Reverse()]) "
    "with vib_flows.flows.Reverse, and flows.make_stack(name, num_flows) puts "
    "a Reverse between the layers of flows that condition on an order."
)


class FlowRegistry(registry.Registry[base.Flow]):
  """The flows' `Registry`: a class's `maps_argument` is not an option.

  A flow class that names a `maps_argument` (planar) gets its number of maps
  from `flows.make_stack`'s num_flows.
  """

  def option_names(self, name: str) -> list[str]:
    maps_argument = self.get_class(name).maps_argument
    return [n for n in super().option_names(name) if n != maps_argument]

  def check_options(self, name: str, options: Iterable[str]) -> None:
    options = list(options)
    maps_argument = self.get_class(name).maps_argument
    if maps_argument is not None and maps_argument in options:
      raise ValueError(
          f"Flow {name!r}: its number of maps is num_flows (flow.num_flows), "
          f"not the option {maps_argument!r}.")
    super().check_options(name, options)


FLOWS = FlowRegistry(
    "flow", base.Flow, name_attribute="flow_name",
    builder_arguments=BUILDER_ARGUMENTS, base_name="vib_flows.flows.Flow",
    unknown_name_hint=(
        " A flow defined outside vib_flows is registered when its module is "
        "imported (config.flow.module)."),
    removed_options={"reverse": REVERSE_REMOVED})


def register(name: str, package: str = "vib_flows"
             ) -> Callable[[FlowClass], FlowClass]:
  """Class decorator: registers a flow under `name` and for Keras serialization.

  Args:
    name: the public flow name used by `flows.get` and `config.flow.name`.
    package: the Keras serialization package (a user's flow may pass its own,
      so that its class name cannot clash with a vib_flows class).

  Returns:
    The decorator; the class is returned unchanged apart from registration
    (and its `flow_name`, set to `name`).

  Raises:
    ValueError: `name` is already registered to another class.
    TypeError: the class is not a `vib_flows.flows.Flow`.
  """
  return FLOWS.register(name, package)


def names() -> list[str]:
  """Returns the sorted list of registered flow names."""
  return FLOWS.names()


def get_class(name: str) -> type[base.Flow]:
  """Returns the class registered as `name`.

  Raises:
    ValueError: `name` is not a registered flow (the message lists them).
  """
  return FLOWS.get_class(name)


def option_names(name: str) -> list[str]:
  """The options of flow `name`: its constructor's named arguments.

  The arguments of every `__init__` up the class hierarchy that the subclass
  forwards `**kwargs` to, down to `Flow`, without the ones the model sets
  (BUILDER_ARGUMENTS) and the class's `maps_argument` (set from num_flows by
  `flows.make_stack`).
  """
  return FLOWS.option_names(name)


def check_options(name: str, options: Iterable[str]) -> None:
  """Raises ValueError naming the options that flow `name` does not take."""
  FLOWS.check_options(name, options)


def get(name: str, **kwargs: Any) -> base.Flow:
  """Returns a new flow layer `name` constructed with `kwargs`.

  The keywords are the flow's options and the arguments the model sets
  (BUILDER_ARGUMENTS), and for a flow with a `maps_argument` its number of
  maps.

  Raises:
    ValueError: `name` is not a registered flow, or a keyword is not an
      argument of its constructor (the messages list the valid ones;
      `reverse` names its replacement, `Reverse`).
  """
  flow_class = FLOWS.get_class(name)
  FLOWS.check_options(
      name, [k for k in kwargs if k != flow_class.maps_argument])
  return flow_class(**kwargs)


def import_modules(modules: str | Iterable[str]) -> None:
  """Imports the modules that register flows defined outside vib_flows.

  Args:
    modules: importable module paths ("pkg.my_flows"), a list, or one
      comma-separated string ("" imports nothing).

  Raises:
    ValueError: a module cannot be imported (names it and the reason).
    TypeError: a module name is not a string.
  """
  if isinstance(modules, str):
    modules = modules.split(",")
  for module in modules:
    if not isinstance(module, str):
      raise TypeError(f"flow.module: a module name is a string, got "
                      f"{module!r}.")
    module = module.strip()
    if not module:
      continue
    try:
      importlib.import_module(module)
    except (ImportError, TypeError, ValueError) as e:  # "." is a TypeError.
      raise ValueError(
          f"flow.module: cannot import {module!r} ({e}). It must be importable "
          "from the working directory or PYTHONPATH."
      ) from e


def filter_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
  """The entries of `options` that flow `name` takes (for shared fields)."""
  return FLOWS.filter_options(name, options)
