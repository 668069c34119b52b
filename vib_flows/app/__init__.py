"""The application: the command line and what a run of it does.

Reads a config (configs/*.py), builds the model from it, trains, evaluates
and exports; uses the library (the top level of `vib_flows`), which never
imports it. Importing this package imports none of its modules.

  cli                the flags, their checks and `main` (`vib_flows.main`)
  modes              train (then evaluate, export), eval, export
  epoch_loop         epochs: validation, early stopping, stop signals
  distributed_steps  the distributed train step, several steps per call
  batch_sources      the batches of an epoch: gathered or tf.data
  run_state          the run's State: strategy, data, model, optimizer
  optimizer_builder  the optimizer a config names; its weight averages
  checkpoint_io      reading and writing checkpoints
  evaluate           test metrics, metrics.json and the run's pictures
  export, serving    the SavedModel: writing it; its signatures
  model_builder      the model a config describes
  config_checks      refusing impossible configs before any work
  config_files       loading configs/*.py by path
  limits             size limits of a run, checked before building
  distribute         strategies and devices
  workdir            the run directory: config.json, lock, atomic writes
  faults             the run's errors and their exit statuses
  phases             the run's phases and how signals stop them
  plots, summaries   pictures; TensorBoard summaries

docs/design.md maps every module.
"""
