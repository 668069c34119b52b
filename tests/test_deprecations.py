"""vib_flows keeps no deprecated API: its DeprecationWarnings fail the tests.

pytest.ini makes a DeprecationWarning an error when it is vib_flows' own (its
message starts with "vib_flows", or it is attributed to a vib_flows module)
and ignores those of third-party packages.
"""

import warnings

import pytest


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
