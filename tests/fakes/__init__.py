"""Loopback fakes of Google Cloud services for tests (never shipped in the package)."""
