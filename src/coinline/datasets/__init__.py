"""Canonical view (version resolution), dataset materialization and content hashing."""
