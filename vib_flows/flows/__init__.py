"""Normalizing-flow layers: `get(name, **kwargs)`, `names()`, `FlowStack`.

Every flow is a Keras layer, `z_out, log_det = layer(z, context=None)`; see
`vib_flows.flows.base.Flow`.
"""

from vib_flows.flows import autoregressive  # iaf, maf
from vib_flows.flows import coupling  # real_nvp, spline
from vib_flows.flows import planar  # planar
from vib_flows.flows import radial  # radial
from vib_flows.flows import sylvester  # sylvester_{orthogonal,householder,triangular}
from vib_flows.flows.base import Flow
from vib_flows.flows.base import FlowBijector
from vib_flows.flows.registry import get
from vib_flows.flows.registry import names
from vib_flows.flows.stack import FlowStack


def make_stack(name, num_flows, **kwargs):
  """Returns a FlowStack of `num_flows` new `name` flows built with `kwargs`."""
  if int(num_flows) < 0:
    raise ValueError(f"num_flows must be >= 0, got {num_flows}.")
  return FlowStack([get(name, **kwargs) for _ in range(int(num_flows))])
