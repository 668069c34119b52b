"""vib_flows' own DeprecationWarnings fail the tests; its deprecated aliases.

pytest.ini makes a DeprecationWarning an error when it is vib_flows' own (its
message starts with "vib_flows", or it is attributed to a vib_flows module)
and ignores those of third-party packages. The deprecated API of this
release: the module paths `vib_flows.export`, `vib_flows.serving` and
`vib_flows.config_files`, aliases of their `vib_flows.app` modules (0.3.0).
"""

import importlib
import sys
import warnings

import pytest

# Deprecated module path -> the module to import instead.
DEPRECATED_MODULES = {
    "vib_flows.export": "vib_flows.app.export",
    "vib_flows.serving": "vib_flows.app.serving",
    "vib_flows.config_files": "vib_flows.app.config_files",
}


def test_a_vib_flows_deprecation_is_an_error():
  with pytest.raises(DeprecationWarning, match="vib_flows.models.x"):
    warnings.warn("vib_flows.models.x is deprecated; use y.",
                  DeprecationWarning, stacklevel=2)
  with pytest.raises(DeprecationWarning, match="deprecated"):
    warnings.warn_explicit("f is deprecated.", DeprecationWarning,
                           "vib_flows/flows/registry.py", 1,
                           module="vib_flows.flows.registry")


@pytest.mark.parametrize("module", ["tensorflow.python.util", "keras.src.ops",
                                    "tensorflow_probability.python", "absl"])
def test_a_third_party_deprecation_is_ignored(module):
  with warnings.catch_warnings(record=True) as caught:
    warnings.warn_explicit("f is deprecated.", DeprecationWarning,
                           f"{module.replace('.', '/')}.py", 1, module=module)
  assert not caught  # Ignored, not even recorded.


def _import_afresh(name):
  """Imports module `name` again, so that its import-time code runs.

  By `__import__`, as an import statement does (`importlib.import_module`
  would be the caller a warning is attributed to).
  """
  sys.modules.pop(name, None)
  parent, _, child = name.rpartition(".")
  if hasattr(sys.modules.get(parent), child):
    delattr(sys.modules[parent], child)
  __import__(name)
  return sys.modules[name]


@pytest.mark.parametrize("old,new", sorted(DEPRECATED_MODULES.items()))
def test_a_deprecated_module_path_warns_and_names_its_replacement(old, new):
  replacement = importlib.import_module(new)
  with pytest.warns(DeprecationWarning) as caught:
    alias = _import_afresh(old)
  messages = [str(w.message) for w in caught]
  assert messages == [f"{old} is deprecated; import {new}"]
  # Attributed to the code that imports it (shown by Python's default
  # filters when that is __main__, as in `python -c "import ..."`).
  assert caught[0].filename == __file__
  # The alias gives the same public names, the same objects.
  assert alias.__all__
  for name in alias.__all__:
    assert getattr(alias, name) is getattr(replacement, name), name


def test_the_aliases_give_every_public_name_of_the_snapshot():
  import json  # pylint: disable=g-import-not-at-top

  from tests import public_api  # pylint: disable=g-import-not-at-top

  with open(public_api.SNAPSHOT, encoding="utf-8") as f:
    snapshot = json.load(f)
  with pytest.warns(DeprecationWarning):
    aliases = {old: _import_afresh(old) for old in DEPRECATED_MODULES}
  for old, new in DEPRECATED_MODULES.items():
    assert sorted(aliases[old].__all__) == sorted(snapshot[new]), old
