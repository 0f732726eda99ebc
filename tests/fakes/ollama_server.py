"""A small fake of Ollama's HTTP API on 127.0.0.1, for the LangChain / ollama client tests.

Implements what ``ollama.Client`` and ``langchain_ollama.ChatOllama`` call, with Ollama's
request and response shapes: ``GET /api/tags`` (the local models), ``GET /api/version``,
``POST /api/show`` and ``POST /api/chat`` (streamed as NDJSON when ``stream`` is true, the
default, else one JSON object), and model creation as Ollama documents it (docs/api.md):
``HEAD`` / ``POST /api/blobs/sha256:DIGEST`` (the upload is refused with 400 when its sha256
is not DIGEST) and ``POST /api/create`` from ``files`` (file name -> uploaded digest) with
``template``, ``system`` and ``parameters`` (404-style 400 for a digest never uploaded;
``/api/show`` then returns them). Chat answers are scripted (:attr:`FakeOllama.replies`): the
fake neither loads the GGUF file nor executes the Go template. A chat for a model the server
does not have answers 404 ``model 'X' not found`` as Ollama does. Every request is recorded
(:attr:`FakeOllama.requests`).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeOllama:
    models: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)
    created: dict[str, dict[str, Any]] = field(default_factory=dict)
    server: ThreadingHTTPServer | None = None
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def chats(self) -> list[dict[str, Any]]:
        return [body for method, path, body in self.requests if path == "/api/chat"]

    def _has(self, name: str) -> bool:
        return any(
            name == m or m == f"{name}:latest" or m.startswith(f"{name}:") for m in self.models
        )

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any, bool]:
        """(status, payload, ndjson)"""
        self.requests.append((method, path, body))
        now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        if method == "GET" and path == "/api/version":
            return 200, {"version": "0.12.0"}, False
        if method == "GET" and path == "/api/tags":
            return (
                200,
                {
                    "models": [
                        {
                            "name": m,
                            "model": m,
                            "modified_at": now,
                            "size": 1,
                            "digest": "0" * 64,
                            "details": {"format": "gguf", "family": "llama"},
                        }
                        for m in self.models
                    ]
                },
                False,
            )
        if path.startswith("/api/blobs/"):
            digest = path.removeprefix("/api/blobs/")
            if method == "HEAD":
                return (200 if digest in self.blobs else 404), {}, False
            if method == "POST":
                data = body if isinstance(body, bytes) else b""
                if f"sha256:{hashlib.sha256(data).hexdigest()}" != digest:
                    return 400, {"error": "digest mismatch"}, False
                self.blobs[digest] = data
                return 201, {}, False
        if method == "POST" and path == "/api/create":
            name = body.get("model") or ""
            files = body.get("files") or {}
            if not name:
                return 400, {"error": "model is required"}, False
            if not files and not body.get("from"):
                return 400, {"error": "neither 'from' or 'files' was specified"}, False
            missing = [d for d in files.values() if d not in self.blobs]
            if missing:
                return 400, {"error": f"blob {missing[0]} not found"}, False
            if not all(f.endswith(".gguf") for f in files) or not all(
                self.blobs[d][:4] == b"GGUF" for d in files.values()
            ):
                return 400, {"error": "unsupported file: not a GGUF file"}, False
            self.created[name] = {
                k: body.get(k) for k in ("files", "template", "system", "parameters")
            }
            self.models.append(name if ":" in name else f"{name}:latest")
            statuses = ["parsing GGUF", "using existing layer", "writing manifest", "success"]
            if body.get("stream", True):
                return 200, [{"status": s} for s in statuses], True
            return 200, {"status": "success"}, False
        if method == "POST" and path == "/api/show":
            if not self._has(body.get("model", "")):
                return 404, {"error": f"model '{body.get('model')}' not found"}, False
            made = self.created.get(body["model"].removesuffix(":latest"), {})
            return (
                200,
                {
                    "modelfile": "",
                    "template": made.get("template") or "",
                    "system": made.get("system") or "",
                    "parameters": "\n".join(
                        f"{k} {json.dumps(x)}"
                        for k, v in (made.get("parameters") or {}).items()
                        for x in (v if isinstance(v, list) else [v])
                    ),
                    "details": {"format": "gguf"},
                    "model_info": {"general.architecture": "llama"},
                    "capabilities": ["completion"],
                },
                False,
            )
        if method == "POST" and path == "/api/chat":
            model = body.get("model", "")
            if not self._has(model):
                return 404, {"error": f"model '{model}' not found"}, False
            if not isinstance(body.get("messages"), list) or not body["messages"]:
                return 400, {"error": "messages are required"}, False
            text = self.replies.pop(0) if self.replies else "ok"
            final = {
                "model": model,
                "created_at": now,
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "total_duration": 1000,
                "load_duration": 10,
                "prompt_eval_count": 12,
                "prompt_eval_duration": 100,
                "eval_count": len(text.split()),
                "eval_duration": 500,
            }
            if body.get("stream", True):
                chunks = [
                    {
                        "model": model,
                        "created_at": now,
                        "message": {"role": "assistant", "content": w},
                        "done": False,
                    }
                    for w in _pieces(text)
                ]
                return 200, [*chunks, final], True
            final["message"]["content"] = text
            return 200, final, False
        return 404, {"error": f"no route for {method} {path}"}, False


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOllama

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: Any
        if self.path.startswith("/api/blobs/"):
            body = raw  # the uploaded file
        else:
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = {"_raw": raw.decode(errors="replace")}
        status, payload, ndjson = self.fake.handle(self.command, self.path.split("?")[0], body)
        if ndjson:
            data = "".join(json.dumps(p) + "\n" for p in payload).encode()
            ctype = "application/x-ndjson"
        else:
            data, ctype = json.dumps(payload).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


def start_fake_ollama(
    models: list[str] | None = None, replies: list[str] | None = None
) -> FakeOllama:
    fake = FakeOllama(models=list(models or []), replies=list(replies or []))
    handler = type("Handler", (_Handler,), {"fake": fake})
    fake.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    fake.port = fake.server.server_address[1]
    threading.Thread(
        target=fake.server.serve_forever,
        kwargs={"poll_interval": 0.05},
        daemon=True,
        name="fake-ollama",
    ).start()
    return fake


def stop_fake_ollama(fake: FakeOllama) -> None:
    if fake.server is not None:
        fake.server.shutdown()
        fake.server.server_close()
