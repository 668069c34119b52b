"""vib_flows: VAEs and VIBs with normalizing-flow posteriors.

Variational autoencoders and the variational information bottleneck with
normalizing-flow posteriors, in Keras 3 / TensorFlow 2.

The library (`flows`, `distributions`, `networks`, `objectives`, `models`,
`optimizers`, ...) takes plain arguments and needs TensorFlow, TFP and Keras
only; the application (`data`, `train`, `evaluate`, `export`, `plots`,
`model_builder`, the one module that builds a model from a config) builds on
it. The sweeps, benchmarks and studies are not installed: they live in the
repository's experiments/. Importing this package imports nothing else;
docs/design.md maps every module.
"""

__version__ = "0.2.0"
