"""Normalizing-flow layers: `get(name, **kwargs)`, `names()`, `FlowStack`.

Every flow is a Keras layer, `z_out, log_det = layer(z, context=None)`; see
`vib_flows.flows.base.Flow`. Every module of this package is imported here, so
a flow module that registers itself (`registry.register`) is all a new flow
needs; flows defined outside the package register the same way when their
module is imported (`import_modules`, `config.flow.module`).

The layers are written with `keras.ops` and run on every Keras backend;
importing this package does not import TensorFlow Probability. The
TensorFlow-only bijector (`FlowBijector`, `Flow.as_bijector`) is loaded on
first use.
"""

import importlib
import pkgutil
from typing import Any

from vib_flows.flows import registry
from vib_flows.flows.base import Flow
from vib_flows.flows.permutation import Reverse
from vib_flows.flows.registry import check_options
from vib_flows.flows.registry import get
from vib_flows.flows.registry import get_class
from vib_flows.flows.registry import import_modules
from vib_flows.flows.registry import names
from vib_flows.flows.registry import option_names
from vib_flows.flows.registry import register
from vib_flows.flows.stack import FlowStack
from vib_flows.flows.stack import make_stack

__all__ = [
    "Flow",
    "FlowBijector",
    "FlowStack",
    "Reverse",
    "check_options",
    "get",
    "get_class",
    "import_modules",
    "make_stack",
    "names",
    "option_names",
    "register",
    "registry",
]

# Modules that register no flow and import TensorFlow (Probability): loaded
# on use only.
_NOT_IMPORTED = ("bijector", "testing")

for _module in pkgutil.iter_modules(__path__):
  if _module.name not in _NOT_IMPORTED:
    importlib.import_module(f"{__name__}.{_module.name}")
del _module


def __getattr__(name: str) -> Any:
  """`FlowBijector`, imported on first use (TensorFlow backend only)."""
  if name == "FlowBijector":
    from vib_flows.flows import bijector  # pylint: disable=g-import-not-at-top
    return bijector.FlowBijector
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
