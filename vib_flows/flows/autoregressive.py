"""Placeholder: filled in by the autoregressive flow work."""
