"""Normalizing-flow layers: `get(name, **kwargs)`, `names()`, `FlowStack`.

Every flow is a Keras layer, `z_out, log_det = layer(z, context=None)`; see
`vib_flows.flows.base.Flow`. Every module of this package is imported here, so
a flow module that registers itself (`registry.register`) is all a new flow
needs; flows defined outside the package register the same way when their
module is imported (`import_modules`, `config.flow.module`).
"""

import importlib
import pkgutil

from vib_flows.flows import registry
from vib_flows.flows.base import Flow
from vib_flows.flows.base import FlowBijector
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

for _module in pkgutil.iter_modules(__path__):
  importlib.import_module(f"{__name__}.{_module.name}")
del _module
