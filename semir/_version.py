"""The version, in a module of its own: what the kernel cache keys by imports it without importing semir."""

__version__ = "0.1.0"
