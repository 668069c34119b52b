"""Reading and checking named fields: one error message for every unknown name.

Used by the model builder (`model_builder.build_model`), the config checks
(`config_checks.validate`) and the export, so that a wrong name is reported
the same way wherever it is caught.
"""

from collections.abc import Iterable
from typing import Any


def check_choice(field: str, value: Any, valid: Iterable[str]) -> None:
  """Raises ValueError "Unknown <field> <value>; valid: a, b." unless valid.

  Args:
    field: the config field, e.g. "model.kind".
    value: its value.
    valid: the accepted values, in the order the message lists them.
  """
  valid = tuple(valid)
  if value not in valid:
    shown = " ".join(repr(value).split())  # A ConfigDict's repr spans lines.
    raise ValueError(f"Unknown {field} {shown}; valid: {', '.join(valid)}.")


def info_field(data_info: Any, key: str) -> Any:
  """`data_info.key` of a `DataInfo`, `data_info[key]` of a dict, or None."""
  if isinstance(data_info, dict):
    return data_info.get(key)
  return getattr(data_info, key, None)
