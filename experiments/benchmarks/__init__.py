"""Pieces of `python -m experiments.benchmark`, one job a module.

synthetic     configs and in-memory synthetic MNIST-shaped data of each case
timing        warm-up, interleaved repeats, medians
package_step  the trainer's own distributed step
              (`distributed_steps.make_train_step`)
handwritten   the same networks as a minimal plain-TensorFlow step
evaluation    importance-weighted log p(x): time and peak memory per K
report        the table and the JSON
"""
