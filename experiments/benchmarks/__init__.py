"""Pieces of `python -m experiments.benchmark`, one job a module.

synthetic     configs and in-memory synthetic MNIST-shaped data of each case
timing        warm-up, interleaved repeats, medians
package_step  the trainer's own distributed step
              (`distributed_steps.make_train_step`), in memory or fed by the
              trainer's tf.data pipeline, and that pipeline alone
handwritten_spec, handwritten_tf, handwritten_jax
              the models and flows written by hand (no vib_flows code): what
              they train (read off a config), the plain-TensorFlow step (also
              the `hand` cases' no-flow VAE and VIB) and the JAX step
evaluation    importance-weighted log p(x): time and peak memory per K, each
              K in a worker subprocess
report        the table and the JSON
mnist         the MNIST-scale cases (group "mnist"): package, hand-written
              TF and JAX steps, GEMM roofline, pipeline, K = 5000
flops, gemm   the FLOP model of a step (its GEMMs) and the GEMMs timed alone
mnist_eval    K = 5000 evaluation against the generator's FLOP bound
"""
