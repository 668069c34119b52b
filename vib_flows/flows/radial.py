"""Placeholder: filled in by the radial flow work."""
