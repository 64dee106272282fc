"""Maintenance scripts (training the reference models); importable so tests can reuse them."""
