"""Error types shared by layers that cannot import each other."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config key or value that the object it configures would reject."""
