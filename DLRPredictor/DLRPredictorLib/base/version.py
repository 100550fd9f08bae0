"""The package version (one place; the bundle manifest and reports record it)."""

__version__ = "0.1.0"
