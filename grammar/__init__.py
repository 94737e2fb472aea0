"""The model language grammar, shipped as package data (installs as ``semir.grammar``)."""
