"""Deprecated alias of `vib_flows.app.config_files`; import that module instead.

Config files written like those in configs/ load their sibling default.py
with `config_files.sibling(__file__, "default")`. Importing this module warns
(DeprecationWarning) and gives the names of `vib_flows.app.config_files`. It
goes in the release after 0.3.0.
"""

import warnings

from vib_flows.app.config_files import load
from vib_flows.app.config_files import load_module
from vib_flows.app.config_files import sibling

__all__ = ["load", "load_module", "sibling"]

warnings.warn(
    "vib_flows.config_files is deprecated; import vib_flows.app.config_files",
    DeprecationWarning, stacklevel=2)
