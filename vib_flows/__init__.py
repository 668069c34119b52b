"""vib_flows: VAEs and VIBs with normalizing-flow posteriors.

Variational autoencoders and the variational information bottleneck with
normalizing-flow posteriors, in Keras 3 / TensorFlow 2.

The library, the top level of the package (`flows`, `distributions`,
`networks`, `objectives`, `models`, `optimizers`, ...), takes plain arguments
and needs TensorFlow, TFP and Keras only; the application, `vib_flows.app`
(the command line, training, evaluation, export, the model builder that
reads a config) and `vib_flows.data`, builds on it. The sweeps, benchmarks
and studies are not installed: they live in the repository's experiments/.
Importing this package imports nothing else; docs/design.md maps every
module.
"""

__version__ = "0.3.0"
