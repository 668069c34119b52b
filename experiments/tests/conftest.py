"""The test set-up of tests/conftest.py (quiet logs, a fixed Keras seed)."""

from tests.conftest import _seed  # noqa: F401  pylint: disable=unused-import
