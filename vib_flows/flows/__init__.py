"""Normalizing-flow layers: `get(name, **kwargs)`, `names()`, `FlowStack`.

Every flow is a Keras layer, `z_out, log_det = layer(z, context=None)`; see
`vib_flows.flows.base.Flow`.
"""

from vib_flows.flows import autoregressive  # iaf, maf
from vib_flows.flows import coupling  # real_nvp, spline
from vib_flows.flows import planar  # planar
from vib_flows.flows import radial  # radial
from vib_flows.flows import sylvester  # sylvester_{orthogonal,householder,triangular}
from vib_flows.flows import registry
from vib_flows.flows.base import Flow
from vib_flows.flows.base import FlowBijector
from vib_flows.flows.registry import get
from vib_flows.flows.registry import names
from vib_flows.flows.stack import FlowStack


def make_stack(name, num_flows, **kwargs):
  """Returns a FlowStack of `num_flows` new `name` flows built with `kwargs`.

  Flows whose class sets `alternates = True` (autoregressive and coupling
  flows) get `reverse=True` on every other layer, so that consecutive layers
  condition on different coordinates.
  """
  if int(num_flows) < 0:
    raise ValueError(f"num_flows must be >= 0, got {num_flows}.")
  alternates = getattr(registry.get_class(name), "alternates", False)
  layers = []
  for k in range(int(num_flows)):
    layer_kwargs = dict(kwargs, reverse=bool(k % 2)) if alternates else kwargs
    layers.append(get(name, **layer_kwargs))
  return FlowStack(layers)
