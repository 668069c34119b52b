"""Tests of the experiments (sweeps, benchmark, diagnostics, studies)."""
