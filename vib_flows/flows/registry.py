"""Name -> flow class registry behind `vib_flows.flows.get` and `names`."""

import keras

_REGISTRY = {}


def register(name):
  """Class decorator: registers a flow under `name` and for Keras serialization.

  Args:
    name: the public flow name used by `flows.get` and `config.flow.name`.

  Returns:
    The decorator; the class is returned unchanged apart from registration.
  """

  def decorator(cls):
    if name in _REGISTRY:
      raise ValueError(f"Flow name {name!r} is already registered.")
    cls = keras.saving.register_keras_serializable(package="vib_flows")(cls)
    cls.flow_name = name
    _REGISTRY[name] = cls
    return cls

  return decorator


def names():
  """Returns the sorted list of registered flow names."""
  return sorted(_REGISTRY)


def get(name, **kwargs):
  """Returns a new flow layer `name` constructed with `kwargs`.

  Raises:
    ValueError: `name` is not a registered flow (the message lists them).
  """
  try:
    cls = _REGISTRY[name]
  except KeyError:
    raise ValueError(
        f"Unknown flow name {name!r}; valid names: {', '.join(names())}."
    ) from None
  return cls(**kwargs)


def get_class(name):
  """Returns the class registered as `name` (see `get` for the error)."""
  if name not in _REGISTRY:
    get(name)
  return _REGISTRY[name]
