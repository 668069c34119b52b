"""One-off studies and independent references (see README.md here).

Each is run from the repository root as `python -m experiments.research.NAME`.
"""
