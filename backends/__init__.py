"""Backends: ``reference`` (NumPy, the executable specification) and generated-kernel backends.

This folder installs as ``semir.backends``.
"""
