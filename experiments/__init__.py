"""Experiments on vib_flows: sweeps, benchmarks, diagnostics and studies.

Not part of the installed package (setup.py installs `vib_flows` only): these
modules run from a checkout of the repository, from its root, e.g.

    python -m experiments.sweep --sweep=vae_digits --workdir=DIR
    python -m experiments.benchmark [--quick]
    python -m experiments.research.iw_convergence --workdir=DIR ...

Because they live in a checkout by design, they read the experiment configs
from the repository's configs/ directory (`CONFIGS`), not from the package.
"""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")


def config_path(name: str) -> str:
  """configs/<name>.py of the repository checkout."""
  return os.path.join(CONFIGS, name + ".py")
