"""Test support shipped with semir: the path-enumeration oracle and random-program strategies."""
