"""A real HTTP receiver of our webhooks for the tests: it verifies each request's HMAC signature and answers from a
script of status codes (then 200)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tritonops.control_plane.webhooks import SIGNATURE_HEADER
from tritonops.serving.triton import free_port

SECRET = "s3cret-for-hmac"


@dataclass
class Receiver:
    """What the receiver saw (one dict per request) and the status codes it answers next."""

    url: str
    script: list[int] = field(default_factory=list)
    seen: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def serve_receiver(secret: str = SECRET) -> Iterator[Receiver]:
    """A ``ThreadingHTTPServer`` on a free port for the duration of the block."""
    port = free_port()
    state = Receiver(f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            state.seen.append(
                {
                    "path": self.path,
                    "body": json.loads(body),
                    "signed": hmac.compare_digest(self.headers.get(SIGNATURE_HEADER, ""), expected),
                    "authorization": self.headers.get("Authorization"),
                    "event": self.headers.get("X-Tritonops-Event"),
                }
            )
            status = state.script.pop(0) if state.script else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:  # keep pytest's output clean
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
