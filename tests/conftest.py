"""Shared fixtures: tiny random models built from a config, saved as real HF directories;
loopback GCP fakes (Cloud Storage emulator, fake Vertex AI) from tests/fakes/gcp_fixtures.py.
Helpers that tests import (models, data, configs) live in the tests.helpers package."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers.tiny import save_tiny_model, tiny_llama

pytest_plugins = [
    "tests.fakes.gcp_fixtures",
    "tests.fakes.fuse_fixtures",
    "tests.helpers.real_data",  # the real default model and data, built once per session
]


@pytest.fixture(autouse=True)
def print_restored():
    """kfp.local swaps builtins.print while it runs tasks; a test must not leave another test
    with an indenting print (the product guards its own runs: run_log.kfp_print_restored)."""
    import builtins

    before = builtins.print
    yield
    builtins.print = before


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one intra-op thread, and tests do not fight the other
    processes of the suite (kfp.local subprocesses, servers) for the machine's cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_model():
    return tiny_llama()


@pytest.fixture
def tiny_model_dir(tmp_path) -> Path:
    return save_tiny_model(tmp_path / "tiny-llama")
