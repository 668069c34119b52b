"""A named collection of classes, with their constructor options.

The flows (`vib_flows.flows.get`, `config.flow.name`), the priors
(`model.prior`) and the likelihoods (`model.likelihood`) are each a
`Registry`, and follow its rules:

- `register(name)` is a class decorator that adds a subclass of the
  registry's base class and registers it for Keras serialization; a name
  taken by another class is refused;
- `names()` is sorted;
- an unknown name is a ValueError listing the valid names;
- the options of a class are the named arguments of its constructor (up the
  class hierarchy while `**kwargs` is passed on), without the arguments its
  builder sets; an unknown option is a ValueError listing the valid ones.

    PRIORS = Registry("prior", Prior, name_attribute="name_",
                      builder_arguments=("latent_dim",))

    @PRIORS.register("mixture")
    class MixturePrior(Prior):
      def __init__(self, latent_dim, num_components=10, **kwargs): ...

    PRIORS.option_names("mixture")      # ["num_components"]
    PRIORS.create("mixture", 2, num_component=3)  # ValueError: valid
                                                  # options: num_components
"""

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
import inspect
from typing import Any, Generic, TypeVar

import keras

Base = TypeVar("Base")
Class = TypeVar("Class", bound=type)

# Arguments of every Keras layer's constructor that its builder sets.
LAYER_ARGUMENTS = ("name", "dtype")


class Registry(Generic[Base]):
  """Names -> subclasses of `base`, the options of each, and their checks.

  Args:
    kind: what a class of the registry is ("flow", "prior"), as the messages
      say it.
    base: the class every registered class derives from; `option_names`
      reads constructors up to it.
    name_attribute: the class attribute `register` sets to the name.
    builder_arguments: constructor arguments that the code building an
      object sets (the dimension, ...), not options; "name" and "dtype" are
      always among them.
    base_name: how messages name `base` (default its module and name).
    unknown_name_hint: a sentence appended to the refusal of an unknown name.
    removed_options: option name -> a sentence appended to the refusal of
      that option (what replaces it).
  """

  def __init__(self, kind: str, base: type[Base], name_attribute: str,
               builder_arguments: Iterable[str] = (),
               base_name: str | None = None, unknown_name_hint: str = "",
               removed_options: Mapping[str, str] | None = None):
    self.kind = kind
    self.base = base
    self.name_attribute = name_attribute
    builder_arguments = tuple(builder_arguments)
    self.builder_arguments = builder_arguments + tuple(
        a for a in LAYER_ARGUMENTS if a not in builder_arguments)
    self.base_name = base_name or f"{base.__module__}.{base.__qualname__}"
    self.unknown_name_hint = unknown_name_hint
    self.removed_options = dict(removed_options or {})
    self._classes: dict[str, type[Base]] = {}

  def register(self, name: str, package: str = "vib_flows"
               ) -> Callable[[Class], Class]:
    """Class decorator: registers a class as `name` and for Keras saving.

    A class of the same qualified name as the registered one (its module
    imported anew, or under another name) replaces it.

    Args:
      name: the public name (`get_class`, the config's field).
      package: the Keras serialization package (a user's class may pass its
        own, so that its class name cannot clash with a vib_flows class).

    Returns:
      The decorator; it returns the class, registered and with its
      `name_attribute` set to `name`.

    Raises:
      ValueError: `name` is registered to another class.
      TypeError: the class is not a subclass of `base`.
    """

    def decorator(cls: Class) -> Class:
      if not (isinstance(cls, type) and issubclass(cls, self.base)):
        raise TypeError(
            f"{self.kind.capitalize()} {name!r}: register a subclass of "
            f"{self.base_name}, got {cls!r}.")
      previous = self._classes.get(name)
      if previous is not None and previous.__qualname__ != cls.__qualname__:
        raise ValueError(
            f"{self.kind.capitalize()} name {name!r} is already registered "
            f"to {previous.__module__}.{previous.__qualname__}.")
      cls = keras.saving.register_keras_serializable(package=package)(cls)
      setattr(cls, self.name_attribute, name)
      self._classes[name] = cls
      return cls

    return decorator

  def names(self) -> list[str]:
    """The registered names, sorted."""
    return sorted(self._classes)

  def __contains__(self, name: object) -> bool:
    """Whether `name` is registered."""
    try:
      return name in self._classes
    except TypeError:  # An unhashable name.
      return False

  def get_class(self, name: str) -> type[Base]:
    """The class registered as `name`.

    Raises:
      ValueError: `name` is not registered (the message lists the names).
    """
    try:
      return self._classes[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name.
      raise ValueError(
          f"Unknown {self.kind} name {name!r}; valid names: "
          f"{', '.join(self.names())}.{self.unknown_name_hint}") from None

  def option_names(self, name: str) -> list[str]:
    """The options of class `name`: its constructor's named arguments.

    The arguments of every `__init__` up the class hierarchy that the class
    passes `**kwargs` on to, down to `base`, in that order, without the
    `builder_arguments`.
    """
    found: list[str] = []
    for cls in self.get_class(name).__mro__:
      if "__init__" not in vars(cls):
        continue
      parameters = list(
          inspect.signature(vars(cls)["__init__"]).parameters.values())[1:]
      found += [p.name for p in parameters if p.kind in (
          p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in found]
      if cls is self.base or not any(p.kind == p.VAR_KEYWORD
                                     for p in parameters):
        break
    return [n for n in found if n not in self.builder_arguments]

  def check_options(self, name: str, options: Iterable[str]) -> None:
    """Raises ValueError naming the options class `name` does not take.

    The builder arguments pass; the message lists the valid options.
    """
    valid = self.option_names(name)
    unknown = sorted(set(options) - set(valid) - set(self.builder_arguments))
    if unknown:
      hints = "".join(self.removed_options.get(o, "") for o in unknown)
      raise ValueError(
          f"{self.kind.capitalize()} {name!r} has no option(s) "
          f"{', '.join(map(repr, unknown))}; valid options: "
          f"{', '.join(valid) or 'none'}.{hints}")

  def filter_options(self, name: str,
                     options: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `options` that class `name` takes as options.

    For a builder holding the values of several classes' options (a config's
    shared fields); `create` refuses the others instead.
    """
    valid = set(self.option_names(name))
    return {k: v for k, v in options.items() if k in valid}

  def create(self, registered_name: str, /, *args: Any,
             **kwargs: Any) -> Base:
    """A new object of class `registered_name`: `cls(*args, **kwargs)`.

    The keywords are checked first (a layer's `name` is one of them).

    Raises:
      ValueError: an unknown name or keyword (`get_class`, `check_options`).
    """
    cls = self.get_class(registered_name)
    self.check_options(registered_name, kwargs)
    return cls(*args, **kwargs)
