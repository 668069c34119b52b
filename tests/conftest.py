"""Shared test set-up: quiet TensorFlow logs and a fixed Keras seed per test."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top


@pytest.fixture(autouse=True)
def _seed():
  keras.utils.set_random_seed(0)
  yield
