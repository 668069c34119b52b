"""Named fields (`vib_flows.fields`): one message for every unknown name."""

import pytest

from vib_flows import fields


def test_check_choice_names_field_value_and_valid_ones():
  fields.check_choice("model.kind", "vae", ("vae", "vib"))
  with pytest.raises(ValueError,
                     match=r"Unknown model.kind 'gan'; valid: vae, vib\."):
    fields.check_choice("model.kind", "gan", ("vae", "vib"))
  assert fields.info_field({"num_classes": 3}, "num_classes") == 3
  assert fields.info_field(object(), "num_classes") is None
