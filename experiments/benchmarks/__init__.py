"""Pieces of `python -m experiments.benchmark`, one job a module.

synthetic     configs and in-memory synthetic MNIST-shaped data of each case
timing        warm-up, interleaved repeats, medians
package_step  the trainer's own distributed step
              (`distributed_steps.make_train_step`)
handwritten   the same networks as a minimal plain-TensorFlow step
evaluation    importance-weighted log p(x): time and peak memory per K
report        the table and the JSON
mnist         the MNIST-scale cases (group "mnist"): package, hand-written
              TF and JAX steps, GEMM roofline, pipeline, K = 5000
handwritten_spec, handwritten_tf, handwritten_jax
              the MNIST-scale models and flows written by hand (no
              vib_flows code)
flops, gemm   the FLOP model of a step (its GEMMs) and the GEMMs timed alone
mnist_eval    K = 5000 evaluation against the generator's FLOP bound
"""
