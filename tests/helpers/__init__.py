"""Test helpers shared across test folders (pytest plugins registered in tests/conftest.py)."""
