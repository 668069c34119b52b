"""Results sweeps: train and evaluate a grid of configurations, tabulate.

`python -m experiments.sweep --sweep=NAME --workdir=DIR` (see `cli`). One job a
module:
  grids       the grids as data (`GRIDS`) and the config of each run
  run         training / evaluating each configuration and seed, resumable;
              the diagnostics every run records
  baseline    the VIB sweep's deterministic Keras MLP, trained with `fit`
  aggregate   mean +- std over seeds, the protocol check, results.json and the
              information plane
  markdown    the results.md tables
  cli         the command line
"""
