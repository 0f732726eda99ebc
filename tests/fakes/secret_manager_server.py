"""A loopback fake of Google Secret Manager's REST API (v1) for the judge's key reading.

It implements ``GET /v1/projects/P/secrets/S/versions/V:access`` with the real reply shape
(``payload.data`` base64, ``payload.dataCrc32c`` as a decimal string), so the real
``google-cloud-secret-manager`` client (``transport="rest"``, ``client_options.api_endpoint``
= :attr:`FakeSecretManager.endpoint`, anonymous credentials) talks to it unchanged. It
reuses the HTTP plumbing of the Vertex fake (:func:`~tests.fakes.vertex_server.serve_on_loopback`,
Google's error body). Every request is recorded.
"""

from __future__ import annotations

import base64
import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import google_crc32c

from tests.fakes.vertex_server import google_error, serve_on_loopback, stop_fake_vertex

_ACCESS = re.compile(
    r"^/v1/projects/(?P<project>[^/]+)/secrets/(?P<secret>[^/]+)/versions/(?P<version>[^/:]+):access$"
)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]


class FakeSecretManager:
    def __init__(self) -> None:
        #: ``projects/P/secrets/S`` -> payload bytes of its (only) version, "1" alias "latest".
        self.secrets: dict[str, bytes] = {}
        #: secret names whose access is refused with 403 PERMISSION_DENIED.
        self.denied: set[str] = set()
        #: a CRC32C to send instead of the payload's (simulates corruption in transit).
        self.wrong_crc32c: int | None = None
        self.requests: list[RecordedRequest] = []
        self.server: Any = None
        self.port = 0
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        path = unquote(urlsplit(raw_path).path)
        with self._lock:
            self.requests.append(
                RecordedRequest(method, path, {k.lower(): v for k, v in headers.items()})
            )
        match = _ACCESS.match(path)
        if method != "GET" or not match:
            return 404, google_error(404, f"no route for {method} {path}")
        g = match.groupdict()
        secret = f"projects/{g['project']}/secrets/{g['secret']}"
        if secret in self.denied:
            return 403, google_error(
                403,
                f"Permission 'secretmanager.versions.access' denied for resource "
                f"'{secret}/versions/{g['version']}' (or it may not exist).",
            )
        if secret not in self.secrets or g["version"] not in ("1", "latest"):
            return 404, google_error(404, f"Secret [{secret}/versions/{g['version']}] not found.")
        data = self.secrets[secret]
        crc = self.wrong_crc32c if self.wrong_crc32c is not None else google_crc32c.value(data)
        return 200, {
            "name": f"{secret}/versions/1",
            "payload": {"data": base64.b64encode(data).decode(), "dataCrc32c": str(crc)},
        }


def start_fake_secret_manager() -> FakeSecretManager:
    return serve_on_loopback(FakeSecretManager(), "fake-secret-manager")


def stop_fake_secret_manager(fake: FakeSecretManager) -> None:
    stop_fake_vertex(fake)
