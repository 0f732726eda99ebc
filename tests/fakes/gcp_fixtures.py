"""pytest fixtures for the loopback GCP fakes: a Cloud Storage emulator and a fake Vertex AI.

Enabled for the whole suite by ``tests/conftest.py`` (``pytest_plugins``). Use them as::

    def test_x(gcs_emulator, fake_vertex, vertex_cfg):
        gcs_emulator.create_bucket("b")
        ...
        assert fake_vertex.find("POST", r"models:upload$")
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from gcp_storage_emulator.server import create_server
from google.api_core.exceptions import Conflict
from google.cloud import storage

from tests.fakes.vertex_server import FakeVertex, start_fake_vertex, stop_fake_vertex


@dataclass
class GcsEmulator:
    host: str
    port: int
    server: Any

    def corrupt(self, bucket: str, name: str, data: bytes) -> None:
        """Replace an object's bytes behind the emulator's back (its stored checksums stay):
        simulates corruption at rest or in transit."""
        self.server._storage._store.write_bytes(f"{bucket}/{name}", data)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self) -> storage.Client:
        return storage.Client(project="medprune-emulator")

    def create_bucket(self, name: str) -> storage.Bucket:
        try:
            return self.client().create_bucket(name)
        except Conflict:
            return self.client().bucket(name)

    def objects(self, bucket: str, prefix: str = "") -> list[str]:
        return sorted(b.name for b in self.client().list_blobs(bucket, prefix=prefix or None))


@pytest.fixture
def gcs_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[GcsEmulator]:
    """An in-memory ``gcp-storage-emulator`` on a free 127.0.0.1 port, with
    ``STORAGE_EMULATOR_HOST`` pointing at it for the duration of the test."""
    logging.getLogger("gcp_storage_emulator").setLevel(logging.WARNING)
    server = create_server("127.0.0.1", 0, in_memory=True)
    server.start()
    port = server._api._httpd.server_address[1]  # the emulator has no public accessor
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    try:
        yield GcsEmulator("127.0.0.1", port, server)
    finally:
        server.stop()


@pytest.fixture
def fake_vertex(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeVertex]:
    """The fake Vertex AI REST server on a free 127.0.0.1 port, with
    ``MEDPRUNE_VERTEX_API_ENDPOINT`` pointing at it for the duration of the test."""
    fake = start_fake_vertex()
    monkeypatch.setenv("MEDPRUNE_VERTEX_API_ENDPOINT", fake.endpoint)
    try:
        yield fake
    finally:
        stop_fake_vertex(fake)
