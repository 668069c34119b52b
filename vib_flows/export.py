"""Deprecated alias of `vib_flows.app.export`; import that module instead.

Importing this module warns (DeprecationWarning) and gives the public names
of `vib_flows.app.export`. It goes in the release after 0.3.0.
"""

import warnings

from vib_flows.app.export import NonFiniteWeightsError
from vib_flows.app.export import ServingModule
from vib_flows.app.export import check_finite_weights
from vib_flows.app.export import existing_versions
from vib_flows.app.export import export_model
from vib_flows.app.export import make_serving_module
from vib_flows.app.export import model_name
from vib_flows.app.export import remove_stale_exports
from vib_flows.app.export import request_seed
from vib_flows.app.export import warmup_requests

__all__ = [
    "NonFiniteWeightsError", "ServingModule", "check_finite_weights",
    "existing_versions", "export_model", "make_serving_module", "model_name",
    "remove_stale_exports", "request_seed", "warmup_requests"]

warnings.warn(
    "vib_flows.export is deprecated; import vib_flows.app.export",
    DeprecationWarning, stacklevel=2)
