"""Placeholder: filled in by the coupling flow work."""
