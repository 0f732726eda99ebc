"""pytest fixtures for the loopback GCP fakes: a Cloud Storage emulator and a fake Vertex AI.

Enabled for the whole suite by ``tests/conftest.py`` (``pytest_plugins``). Use them as::

    def test_x(gcs_emulator, fake_vertex, vertex_cfg):
        gcs_emulator.create_bucket("b")
        ...
        assert fake_vertex.find("POST", r"models:upload$")
"""

from __future__ import annotations

import ipaddress
import logging
import socket
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


_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _is_loopback(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode()
    host = str(host).strip("[]")
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests send traffic to loopback only: resolving or connecting to any other address
    fails at once (a safety net, so a missed endpoint override fails loudly and fast)."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host, *args, **kwargs):
        if not _is_loopback(host):
            raise socket.gaierror(f"tests may only reach loopback, not {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def _check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            raise ConnectionRefusedError(f"tests may only reach loopback, not {address[0]!r}")

    def connect(self, address):
        _check(self, address)
        return real_connect(self, address)

    def connect_ex(self, address):
        _check(self, address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture(scope="session")
def _gcs_emulator_server() -> Iterator[tuple[Any, int]]:
    logging.getLogger("gcp_storage_emulator").setLevel(logging.WARNING)
    server = create_server("127.0.0.1", 0, in_memory=True)
    server.start()
    port = server._api._httpd.server_address[1]  # the emulator has no public accessor
    try:
        yield server, port
    finally:
        server.stop()


@pytest.fixture
def gcs_emulator(_gcs_emulator_server, monkeypatch: pytest.MonkeyPatch) -> Iterator[GcsEmulator]:
    """An in-memory ``gcp-storage-emulator`` on a free 127.0.0.1 port (one per session,
    emptied before each test), with ``STORAGE_EMULATOR_HOST`` pointing at it."""
    server, port = _gcs_emulator_server
    server.wipe()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    return GcsEmulator("127.0.0.1", port, server)


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


@dataclass
class VertexEnv:
    """A project, region and bucket wired to the loopback fakes."""

    project: str
    location: str
    bucket: str
    gcs: GcsEmulator
    vertex: FakeVertex

    def vertex_section(self, **overrides: Any) -> dict[str, Any]:
        """A ``vertex:`` config mapping for these fakes (project etc. come from the env)."""
        return {"service_account": f"pipeline@{self.project}.iam.gserviceaccount.com", **overrides}


@pytest.fixture
def vertex_env(
    gcs_emulator: GcsEmulator, fake_vertex: FakeVertex, monkeypatch: pytest.MonkeyPatch
) -> VertexEnv:
    """Both fakes plus GOOGLE_CLOUD_PROJECT / GOOGLE_CLOUD_REGION / MEDPRUNE_BUCKET set and
    the bucket created, so a config with ``vertex: {}`` works against loopback only."""
    env = VertexEnv(
        "medprune-test", "us-central1", "medprune-test-bucket", gcs_emulator, fake_vertex
    )
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", env.project)
    monkeypatch.setenv("GOOGLE_CLOUD_REGION", env.location)
    monkeypatch.setenv("MEDPRUNE_BUCKET", env.bucket)
    gcs_emulator.create_bucket(env.bucket)
    return env
