"""vib_flows: variational autoencoders and the variational information bottleneck
with normalizing-flow posteriors, in Keras 3 / TensorFlow 2."""

__version__ = "0.1.0"
