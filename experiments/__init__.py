"""Experiments on vib_flows: sweeps, benchmarks, diagnostics and studies.

Not part of the installed package (setup.py installs `vib_flows` only): these
modules run from a checkout of the repository, from its root, e.g.

    python -m experiments.sweep --sweep=vae_digits --workdir=DIR
    python -m experiments.benchmark [--quick]
    python -m experiments.research.iw_convergence --workdir=DIR ...

Because they live in a checkout by design, they read the experiment configs
from the repository's configs/ directory (`CONFIGS`), not from the package.
"""

import importlib.util
import os
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")


def config_path(name: str) -> str:
  """configs/<name>.py of the repository checkout."""
  return os.path.join(CONFIGS, name + ".py")


def example_module(name: str) -> types.ModuleType:
  """examples/<name>.py of the checkout, imported (examples/ is no package).

  For measurements of the examples' own models, without a copy of them.
  """
  path = os.path.join(ROOT, "examples", name + ".py")
  spec = importlib.util.spec_from_file_location(f"examples_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
