"""Name registries of the priors and likelihoods (`model.prior`, ...).

The class decorator `register(registry, name)` fills `PRIORS` or
`LIKELIHOODS` and registers the class for Keras serialization, so a new prior
or likelihood is declared in one place, as the flows are
(`vib_flows.flows.registry`).
"""

from collections.abc import Callable
import inspect
from typing import Any, TypeVar

import keras

PRIORS: dict[str, type] = {}  # model.prior name -> Prior subclass.
LIKELIHOODS: dict[str, type] = {}  # model.likelihood name -> Likelihood.
_T = TypeVar("_T")


def register(registry: dict[str, type], name: str) -> Callable[[_T], _T]:
  """Class decorator: `registry[name] = cls`, and Keras serialization."""

  def decorator(cls: Any) -> Any:
    if name in registry:
      raise ValueError(f"{name!r} is already registered.")
    cls = keras.saving.register_keras_serializable(package="vib_flows")(cls)
    cls.name_ = name
    registry[name] = cls
    return cls

  return decorator


def prior_names() -> tuple[str, ...]:
  """The valid `model.prior` names, in registration order."""
  return tuple(PRIORS)


def likelihood_names() -> tuple[str, ...]:
  """The valid `model.likelihood` names, in registration order."""
  return tuple(LIKELIHOODS)


def accepted_kwargs(cls: type[keras.layers.Layer],
                    kwargs: dict[str, Any]) -> dict[str, Any]:
  """The subset of `kwargs` that `cls.__init__` names explicitly."""
  params = inspect.signature(cls.__init__).parameters
  return {k: v for k, v in kwargs.items() if k in params}
