"""The validation-curve statistics of experiments.research.curve_gaps."""

import json

import numpy as np
import pytest

from experiments.research import curve_gaps


def test_compare_counts_epochs_from_one_and_the_gaps_of_the_tail():
  b = np.array([10.0, 9.0, 8.0, 7.0, 6.0, 5.0])
  # a: above b at epochs 1 and 3, below from epoch 4 on, by 1, 2, 3.
  a = np.array([11.0, 8.5, 8.0, 6.0, 4.0, 2.0])
  stats = curve_gaps.compare(a, b, from_epoch=3)
  assert stats["epochs"] == 6
  assert stats["below_from"] == 4  # Equal at epoch 3 is not below.
  # Epochs 3-6: gaps 0, 1, 2, 3.
  assert stats["share_below"] == pytest.approx(0.75)
  assert stats["mean_gap"] == pytest.approx(1.5)
  assert stats["p10"] == pytest.approx(0.3)
  assert stats["p90"] == pytest.approx(2.7)
  # Below everywhere; never below for good; curves of other lengths.
  assert curve_gaps.compare(b - 1, b, 1)["below_from"] == 1
  assert np.isnan(curve_gaps.compare(b + 1, b, 1)["below_from"])
  assert curve_gaps.compare(a[:4], b, 1)["epochs"] == 4


def test_mean_curves_average_the_seeds_over_the_epochs_all_ran(tmp_path):
  results = {"configs": [
      {"name": "none", "runs": {"0": {"validation_loss": [4.0, 3.0, 2.0]},
                                "1": {"validation_loss": [6.0, 5.0]}}},
      {"name": "iaf4", "runs": {"0": {"test_elbo": -1.0}}}]}
  (tmp_path / "results.json").write_text(json.dumps(results))
  curves = curve_gaps.mean_curves(str(tmp_path))
  assert list(curves) == ["none"]  # No history: no curve.
  np.testing.assert_allclose(curves["none"], [5.0, 4.0])


def test_final_slope_is_the_tails_fall_per_100_epochs():
  curve = np.concatenate([np.full(10, 99.0), 90.0 - 0.02 * np.arange(50)])
  assert curve_gaps.final_slope(curve, 50) == pytest.approx(-2.0)
  assert curve_gaps.final_slope(curve, 5) == pytest.approx(-2.0)
