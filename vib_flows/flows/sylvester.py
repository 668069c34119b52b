"""Placeholder: filled in by the sylvester flow work."""
