"""The masking checks of experiments.research.gradient_masking."""

import numpy as np
import pytest
import tensorflow as tf

from experiments.research import gradient_masking
from tests import helpers
from vib_flows import data as data_lib

SEED = tf.constant([3, 4], tf.int32)


def test_a_saturated_softmax_shows_as_no_gradient_and_falls_to_the_margin():
  # Class 1 right of 0.5 with a logit gap of 1000 (x_0 - 0.5): at 0.65 and
  # 0.9 the softmax is saturated, the cross-entropy has no gradient, and only
  # the margin attack moves x_0: by 0.1, both stay in class 1; by 0.2 and
  # 0.3, 0.65 crosses 0.5.
  split = data_lib.Split(np.array([[0.65, 0.3], [0.9, 0.3]], np.float32),
                         np.array([1, 1]))
  table = gradient_masking.accuracies(helpers.SaturatedClassifier(), split, 1,
                                      None, SEED, pgd_steps=10)
  assert table["no gradient"] == {0.1: 1.0, 0.2: 1.0, 0.3: 1.0}
  for column in ("clean", "FGSM", "PGD"):
    assert table[column] == {0.1: 1.0, 0.2: 1.0, 0.3: 1.0}, column
  assert table["PGD margin"] == {0.1: 1.0, 0.2: 0.5, 0.3: 0.5}
  assert table["transfer FGSM"] == {}  # No source model.
  assert set(table["random signs"]) == {0.1, 0.2, 0.3}
  assert not any("restarts" in column for column in table)
  # Random starts below about 0.59 have a gradient and walk across 0.5: from
  # 0.65 they exist for epsilon 0.2 and 0.3; 0.9's starts stay right of 0.6.
  restarted = gradient_masking.accuracies(
      helpers.SaturatedClassifier(), split, 1, None, SEED, pgd_steps=10,
      restarts=30)
  assert restarted["PGD, 30 restarts"] == {0.1: 1.0, 0.2: 0.5, 0.3: 0.5}


def test_no_gradient_counts_only_the_images_fgsm_leaves_alone():
  # BumpClassifier has a gradient on x_0 near its bump (0.5), none at 0.
  split = data_lib.Split(np.array([[0.5, 0.3], [0.0, 0.3], [0.5, 0.7]],
                                  np.float32), np.array([0, 0, 0]))
  share = gradient_masking.unmoved_by_fgsm(helpers.BumpClassifier(), split, 1,
                                           SEED, batch_size=2)
  assert share == pytest.approx(1 / 3)
