"""Frontends that build IR: the model language, the Python tracer, and the shared builder."""
