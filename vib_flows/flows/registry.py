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

The `reverse` option of the autoregressive, coupling and triangular
Sylvester flows is gone: `flows.make_stack` puts a `flows.Reverse` layer
between such layers. `get(name, reverse=...)` still works for those flows,
with a DeprecationWarning (see `get`).
"""

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
import importlib
import inspect
from typing import TYPE_CHECKING, Any, TypeVar
import warnings

import keras

from vib_flows.flows import base

if TYPE_CHECKING:
  from vib_flows.flows import stack  # pylint: disable=g-bad-import-order

_REGISTRY: dict[str, type[base.Flow]] = {}
# Arguments set by the model that builds the flow, not options of a flow.
BUILDER_ARGUMENTS = ("dim", "context_dim", "amortized", "name", "dtype")

FlowClass = TypeVar("FlowClass", bound=type[base.Flow])


def register(name: str, package: str = "vib_flows"
             ) -> Callable[[FlowClass], FlowClass]:
  """Class decorator: registers a flow under `name` and for Keras serialization.

  Args:
    name: the public flow name used by `flows.get` and `config.flow.name`.
    package: the Keras serialization package (a user's flow may pass its own,
      so that its class name cannot clash with a vib_flows class).

  Returns:
    The decorator; the class is returned unchanged apart from registration.

  Raises:
    ValueError: `name` is already registered to another class.
    TypeError: the class is not a `vib_flows.flows.Flow`.
  """

  def decorator(cls: FlowClass) -> FlowClass:
    if not (isinstance(cls, type) and issubclass(cls, base.Flow)):
      raise TypeError(
          f"Flow {name!r}: register a subclass of vib_flows.flows.Flow, got "
          f"{cls!r}."
      )
    previous = _REGISTRY.get(name)
    if previous is not None and previous.__qualname__ != cls.__qualname__:
      raise ValueError(
          f"Flow name {name!r} is already registered to "
          f"{previous.__module__}.{previous.__qualname__}."
      )
    cls = keras.saving.register_keras_serializable(package=package)(cls)
    cls.flow_name = name
    _REGISTRY[name] = cls
    return cls

  return decorator


def names() -> list[str]:
  """Returns the sorted list of registered flow names."""
  return sorted(_REGISTRY)


def get_class(name: str) -> type[base.Flow]:
  """Returns the class registered as `name`.

  Raises:
    ValueError: `name` is not a registered flow (the message lists them).
  """
  try:
    return _REGISTRY[name]
  except KeyError:
    raise ValueError(
        f"Unknown flow name {name!r}; valid names: {', '.join(names())}. "
        "A flow defined outside vib_flows is registered when its module is "
        "imported (config.flow.module)."
    ) from None


def option_names(name: str) -> list[str]:
  """The options of flow `name`: its constructor's named arguments.

  The arguments of every `__init__` up the class hierarchy that the subclass
  forwards `**kwargs` to, down to `Flow`, without the ones the model sets
  (BUILDER_ARGUMENTS) and the class's `maps_argument` (set from num_flows by
  `flows.make_stack`).
  """
  found = []
  flow_class = get_class(name)
  for cls in flow_class.__mro__:
    if "__init__" not in vars(cls):
      continue
    init = vars(cls)["__init__"]
    parameters = list(inspect.signature(init).parameters.values())[1:]
    found += [p.name for p in parameters if p.kind in (
        p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in found]
    if cls is base.Flow or not any(p.kind == p.VAR_KEYWORD
                                   for p in parameters):
      break
  return [n for n in found if n not in BUILDER_ARGUMENTS
          and n != flow_class.maps_argument]


def check_options(name: str, options: Iterable[str]) -> None:
  """Raises ValueError naming the options that flow `name` does not take."""
  options = list(options)
  maps_argument = get_class(name).maps_argument
  if maps_argument is not None and maps_argument in options:
    raise ValueError(
        f"Flow {name!r}: its number of maps is num_flows (flow.num_flows), "
        f"not the option {maps_argument!r}.")
  valid = option_names(name)
  unknown = sorted(set(options) - set(valid) - set(BUILDER_ARGUMENTS))
  if unknown:
    hint = REVERSE_REMOVED if "reverse" in unknown else ""
    raise ValueError(
        f"Flow {name!r} has no option(s) {', '.join(map(repr, unknown))}; "
        f"valid options: {', '.join(valid) or 'none'}.{hint}"
    )


REVERSE_REMOVED = (
    " The 'reverse' option was removed: the layer conditioning on the "
    "reversed coordinate order is FlowStack([Reverse(), layer, Reverse()]) "
    "with vib_flows.flows.Reverse, and flows.make_stack(name, num_flows) puts "
    "a Reverse between the layers of flows that condition on an order."
)


def get(name: str, **kwargs: Any) -> "base.Flow | stack.FlowStack":
  """Returns a new flow layer `name` constructed with `kwargs`.

  Deprecated: `reverse=` for a flow that conditions on a coordinate order
  (`needs_permutation`: iaf, maf, real_nvp, spline, sylvester_triangular)
  whose constructor no longer takes it. It warns (DeprecationWarning) and
  returns the equivalent: the layer itself for reverse=False, and for
  reverse=True the `FlowStack([Reverse(), layer, Reverse()])`, which maps
  z -> R f(R z) with R the coordinate reversal: the layer conditioning on
  the order d..1 (for sylvester_triangular the map that `reverse=True` gave,
  Q the reversal permutation; for the autoregressive and coupling flows the
  same family of maps, their conditioner's inputs in the other order).

  Raises:
    ValueError: `name` is not a registered flow, or a keyword is not an
      argument of its constructor (the messages list the valid ones;
      `reverse` for other flows names its replacement, `Reverse`).
  """
  flow_class = get_class(name)
  if ("reverse" in kwargs and flow_class.needs_permutation
      and "reverse" not in option_names(name)):
    return _deprecated_reverse(name, **kwargs)
  check_options(name, [k for k in kwargs if k != flow_class.maps_argument])
  return flow_class(**kwargs)


def _deprecated_reverse(name: str, reverse: bool,
                        **kwargs: Any) -> "base.Flow | stack.FlowStack":
  """`get(name, reverse=reverse, **kwargs)` as the old option meant it."""
  # pylint: disable=g-import-not-at-top
  from vib_flows.flows import permutation
  from vib_flows.flows import stack as stack_module
  warnings.warn(
      f"flows.get({name!r}, reverse=...) is deprecated and will be removed."
      + REVERSE_REMOVED + " Returning that stack for reverse=True, the layer "
      "for reverse=False.",
      DeprecationWarning,
      stacklevel=3,
  )
  layer = get(name, **kwargs)
  if not reverse:
    return layer
  dim, dtype = kwargs.get("dim"), kwargs.get("dtype")
  return stack_module.FlowStack(
      [permutation.Reverse(dim=dim, dtype=dtype), layer,
       permutation.Reverse(dim=dim, dtype=dtype)],
      dtype=dtype)


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
  valid = set(option_names(name))
  return {k: v for k, v in options.items() if k in valid}
