"""Deprecated alias of `vib_flows.app.serving`; import that module instead.

Importing this module warns (DeprecationWarning) and gives the public names
of `vib_flows.app.serving`. It goes in the release after 0.3.0.
"""

import warnings

from vib_flows.app.serving import ServingModule
from vib_flows.app.serving import input_range
from vib_flows.app.serving import make_serving_module
from vib_flows.app.serving import request_seed

__all__ = ["ServingModule", "input_range", "make_serving_module",
           "request_seed"]

warnings.warn(
    "vib_flows.serving is deprecated; import vib_flows.app.serving",
    DeprecationWarning, stacklevel=2)
