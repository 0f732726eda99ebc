"""A loopback fake of Anthropic's Messages API (``POST /v1/messages``) for the judge tests.

It serves 127.0.0.1 only and answers with the real response shape, so the real
``anthropic`` SDK talks to it unchanged (``base_url="http://127.0.0.1:PORT"``). Every request
is recorded (path, headers, JSON body). Replies are scripted with :meth:`FakeAnthropic.queue`:
an HTTP error (429 with ``Retry-After``, 5xx), a delay longer than the client's timeout, or a
reply whose text is not the JSON the schema asks for; with nothing queued it answers with
:attr:`FakeAnthropic.verdict` as the text of a valid structured-output reply.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VALID_VERDICT = {
    "supported_facts": ["Hypertension on lisinopril 20 mg."],
    "unsupported_facts": [],
    "omissions": ["fatigue"],
    "harmful_errors": [],
    "faithfulness": 5,
    "completeness": 4,
    "harm_free": 5,
    "overall": 4,
    "reason": "Faithful, omits the fatigue.",
}


@dataclass
class Reply:
    status: int = 200
    text: str | None = None  # the text content of a 200 reply (default: the verdict as JSON)
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: Any


class FakeAnthropic:
    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.verdict: dict = dict(VALID_VERDICT)
        self._queue: list[Reply] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    body = raw.decode("utf-8", "replace")
                with fake._lock:
                    fake.requests.append(
                        RecordedRequest(
                            self.path, {k.lower(): v for k, v in self.headers.items()}, body
                        )
                    )
                    reply = fake._queue.pop(0) if fake._queue else Reply()
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if self.path != "/v1/messages":
                    return self._send(
                        404,
                        {
                            "type": "error",
                            "error": {"type": "not_found_error", "message": self.path},
                        },
                    )
                if reply.status != 200:
                    kind = "rate_limit_error" if reply.status == 429 else "api_error"
                    return self._send(
                        reply.status,
                        {"type": "error", "error": {"type": kind, "message": "scripted"}},
                        reply.headers,
                    )
                text = reply.text if reply.text is not None else json.dumps(fake.verdict)
                model = body.get("model", "claude") if isinstance(body, dict) else "claude"
                self._send(
                    200,
                    {
                        "id": f"msg_{len(fake.requests):04d}",
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [{"type": "text", "text": text}],
                        "stop_reason": "end_turn",
                        "stop_sequence": None,
                        "usage": {"input_tokens": 120, "output_tokens": 45},
                    },
                    reply.headers,
                )

            def _send(
                self, status: int, payload: dict, headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def queue(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
