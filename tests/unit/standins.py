"""Stand-ins the control plane's and the page's tests share: a canned HTTP server on 127.0.0.1, a closed port."""

from __future__ import annotations

import http.server
import json
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from scalelab.orchestrators.base import InstanceInfo
from tests.unit.support import InThread


@dataclass(frozen=True)
class Reply:
    """What the server sends back for one method and path."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"


@dataclass(frozen=True)
class Seen:
    """One request the server received."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def form(self) -> dict[str, str]:
        """Return the request's url-encoded form body as single values."""
        return {key: values[0] for key, values in parse_qs(self.body.decode()).items()}


class CannedServer(InThread):
    """A real HTTP server on 127.0.0.1 (port 0): answers set replies (404 otherwise) and records each request."""

    def __init__(self) -> None:
        self.replies: dict[tuple[str, str], Reply] = {}
        self.seen: list[Seen] = []
        canned = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                parts = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                canned.seen.append(Seen(self.command, parts.path, parse_qs(parts.query), body, dict(self.headers)))
                reply = canned.replies.get((self.command, parts.path), Reply(404, b'{"error": "no such route"}'))
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        super().__init__(server)

    def json(self, method: str, path: str, payload: Any, status: int = 200) -> None:
        """Answer ``method path`` with ``payload`` as JSON."""
        self.replies[(method, path)] = Reply(status, json.dumps(payload).encode())

    def text(self, method: str, path: str, text: str, status: int = 200) -> None:
        """Answer ``method path`` with plain text (e.g. a Prometheus exposition)."""
        self.replies[(method, path)] = Reply(status, text.encode(), "text/plain; version=0.0.4")

    def paths(self) -> list[str]:
        """Return the paths requested so far, in order."""
        return [seen.path for seen in self.seen]


def closed_port() -> int:
    """Return a port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def instance(name: str, service: str, port: int, state: str = "running", health: str | None = None) -> InstanceInfo:
    """Return the orchestrator's view of an instance on 127.0.0.1."""
    return InstanceInfo(name, service, port, state, pid=None, health=health)
