"""The public API of vib_flows as data: names and signatures, for a snapshot.

    python -m tests.public_api            # print the API as JSON
    python -m tests.public_api --update   # rewrite tests/public_api.json

tests/test_public_api.py compares the API of the checked-out code with the
snapshot tests/public_api.json, so that a change of a public name or
signature fails until the snapshot is regenerated on purpose (and the change
has its line in CHANGELOG.md). The public API is:

- `vib_flows.flows`: every name of its `__all__`, and every registered flow
  class (`flows.names()`), with its constructor and public methods;
- the documented functions and classes (a docstring, a name without a
  leading underscore, defined in the module or its package) of
  `vib_flows.models`, `objectives`, `distributions`, `networks`,
  `gated_conv`, `adversarial`, `fit_settings`, `data.idx`, `app.export` and
  `app.serving`; a module's `__all__`, where it has one, decides instead;
- the fields of configs/default.py (the command line's `--config.*`), with
  the type of their default value.

A signature is `str(inspect.signature(...))` with memory addresses removed.
The collection runs in a fresh process (the test starts one), so flows that
other tests register and modules they import cannot change it.
"""

import argparse
import inspect
import json
import os
import re
import sys
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNAPSHOT = os.path.join(ROOT, "tests", "public_api.json")
UPDATE_COMMAND = "python -m tests.public_api --update"
MODULES = (
    "vib_flows.models",
    "vib_flows.objectives",
    "vib_flows.distributions",
    "vib_flows.networks",
    "vib_flows.gated_conv",
    "vib_flows.adversarial",
    "vib_flows.fit_settings",
    "vib_flows.data.idx",
    "vib_flows.app.export",
    "vib_flows.app.serving",
    "vib_flows.app.config_files",
)
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
# Where a class of TensorFlow or Keras lives inside their private packages is
# not vib_flows' API: tensorflow.python.framework.tensor.Tensor -> tf.Tensor,
# keras.src.layers.layer.Layer -> keras.Layer.
_PRIVATE_PATHS = (
    (re.compile(r"\btensorflow\.python(?:\.\w+)*\.(\w+)"), r"tf.\1"),
    (re.compile(r"\bkeras\.src(?:\.\w+)*\.(\w+)"), r"keras.\1"),
)


def signature(obj) -> str:
  """`str(inspect.signature(obj))` without memory addresses."""
  try:
    text = str(inspect.signature(obj))
  except (TypeError, ValueError):
    return "(signature unavailable)"
  text = _ADDRESS.sub("", text)
  for pattern, replacement in _PRIVATE_PATHS:
    text = pattern.sub(replacement, text)
  return text


def _methods(cls: type) -> dict[str, str]:
  """Public methods and properties the class itself defines (not inherited)."""
  methods = {}
  for name, member in sorted(vars(cls).items()):
    if name.startswith("_"):
      continue
    if isinstance(member, property):
      methods[name] = "property"
    elif isinstance(member, (staticmethod, classmethod)):
      methods[name] = signature(member.__func__)
    elif inspect.isfunction(member):
      methods[name] = signature(member)
  return methods


def describe(obj) -> dict:
  """Kind, signature and, for classes, public methods of `obj`."""
  if inspect.isclass(obj):
    return {"kind": "class",
            "name": f"{obj.__module__}.{obj.__qualname__}",
            "signature": signature(obj),
            "methods": _methods(obj)}
  if inspect.ismodule(obj):
    return {"kind": "module", "name": obj.__name__}
  if callable(obj):
    return {"kind": "function", "signature": signature(obj)}
  return {"kind": type(obj).__name__}


def _defined_in(obj, module: types.ModuleType) -> bool:
  home = getattr(obj, "__module__", None) or ""
  return home == module.__name__ or home.startswith(module.__name__ + ".")


def module_api(module: types.ModuleType) -> dict:
  """The documented public functions and classes of `module`."""
  names = getattr(module, "__all__", None)
  if names is None:
    names = [
        name for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and _defined_in(obj, module) and inspect.getdoc(obj)
    ]
  return {name: describe(getattr(module, name)) for name in sorted(names)}


def config_fields() -> dict[str, str]:
  """Every field of configs/default.py: dotted name -> type of its default."""
  import importlib.util  # pylint: disable=import-outside-toplevel

  def flatten(config, prefix):
    for key in sorted(config.keys()):
      value = config[key]
      name = f"{prefix}{key}"
      if hasattr(value, "keys"):
        yield name, "ConfigDict"
        yield from flatten(value, name + ".")
      else:
        yield name, type(value).__name__

  path = os.path.join(ROOT, "configs", "default.py")
  spec = importlib.util.spec_from_file_location("default_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return dict(flatten(module.get_config(), ""))


def collect() -> dict:
  """The public API of the installed vib_flows as a JSON-ready dict."""
  import importlib  # pylint: disable=import-outside-toplevel

  from vib_flows import flows  # pylint: disable=import-outside-toplevel

  api = {"vib_flows.flows": module_api(flows)}
  api["flow classes (vib_flows.flows.names())"] = {
      name: describe(flows.get_class(name)) for name in flows.names()
  }
  for name in MODULES:
    api[name] = module_api(importlib.import_module(name))
  api["config fields (configs/default.py)"] = config_fields()
  return api


def dumps(api: dict) -> str:
  return json.dumps(api, indent=1, sort_keys=True) + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--update", action="store_true",
                      help=f"rewrite {os.path.relpath(SNAPSHOT, ROOT)}")
  args = parser.parse_args(argv)
  # The snapshot is of the TensorFlow backend, whatever the caller's
  # environment says (set before Keras is first imported).
  os.environ["KERAS_BACKEND"] = "tensorflow"
  text = dumps(collect())
  if args.update:
    with open(SNAPSHOT, "w", encoding="utf-8") as f:
      f.write(text)
    print(f"Wrote {SNAPSHOT}.", file=sys.stderr)
  else:
    sys.stdout.write(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
