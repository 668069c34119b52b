"""vib_flows: VAEs and VIBs with normalizing-flow posteriors.

Variational autoencoders and the variational information bottleneck with
normalizing-flow posteriors, in Keras 3 / TensorFlow 2.

The library (`flows`, `distributions`, `networks`, `objectives`, `models`)
needs TensorFlow, TFP and Keras only; the application (`data`, `train`,
`evaluate`, `export`, `sweeps`, `plots`, `benchmark`) builds on it. Importing
this package imports nothing else; docs/design.md maps every module.
"""

__version__ = "0.2.0"
