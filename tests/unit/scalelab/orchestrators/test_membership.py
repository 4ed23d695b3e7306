"""Membership calls against stand-in balancing peers: announcing and withdrawing an instance."""

from __future__ import annotations

import http.server
import json
import socket
from collections.abc import Iterator

import pytest

from scalelab.membership import announce, main, withdraw
from scalelab.orchestrators.base import OrchestratorError
from tests.unit.support import InThread


class Peer(InThread):
    """A stand-in gateway or balancer: answers every request with a set status and records it."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.seen: list[tuple[str, str, str | None, bytes]] = []
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                peer.seen.append((self.command, self.path, self.headers.get("X-Admin-Token"), body))
                payload = json.dumps({"error": "nope", "status": peer.status}).encode()
                self.send_response(peer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler))


@pytest.fixture
def peers() -> Iterator[dict[int, Peer]]:
    """One stand-in peer per status it answers with."""
    made = {status: Peer(status) for status in (200, 201, 404, 409)}
    yield made
    for peer in made.values():
        peer.stop()


def closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_withdraw_deletes_the_instance_on_every_peer(peers):
    withdraw("microservice-4", "/pool/backends", [peers[200].url, peers[404].url], "secret")
    for status in (200, 404):  # a peer that no longer has it is fine
        assert peers[status].seen == [("DELETE", "/pool/backends/microservice-4", "secret", b"")]


def test_withdraw_fails_naming_a_peer_that_refuses(peers):
    with pytest.raises(OrchestratorError, match=r"microservice-4 is still running: .* refused .*409"):
        withdraw("microservice-4", "/pool/backends", [peers[200].url, peers[409].url], "secret")
    assert len(peers[200].seen) == 1


def test_withdraw_fails_naming_a_peer_that_cannot_be_reached():
    url = closed_url()
    with pytest.raises(OrchestratorError, match=f"{url} could not be reached"):
        withdraw("gateway-3", "/lb/backends", [url], "secret")


def test_announce_still_posts_name_and_url(peers):
    announce("gateway-3", "http://127.0.0.1:5102", "/lb/backends", [peers[201].url], "secret")
    method, path, token, body = peers[201].seen[0]
    assert (method, path, token) == ("POST", "/lb/backends", "secret")
    assert json.loads(body) == {"name": "gateway-3", "url": "http://127.0.0.1:5102"}


def test_main_announces_and_withdraws(peers, monkeypatch):
    monkeypatch.setenv("SCALELAB_ADMIN_TOKEN", "from-env")
    assert main(["gateway-3", "http://127.0.0.1:5102", "/lb/backends", peers[201].url]) == 0
    assert main(["--withdraw", "gateway-3", "/lb/backends", peers[200].url]) == 0
    assert peers[201].seen[0][:3] == ("POST", "/lb/backends", "from-env")
    assert peers[200].seen[0][:3] == ("DELETE", "/lb/backends/gateway-3", "from-env")


def test_main_reports_a_refusal_with_exit_code_1(peers, capsys):
    assert main(["--withdraw", "gateway-3", "/lb/backends", peers[409].url]) == 1
    assert "refused" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[], ["--withdraw", "gateway-3", "/lb/backends"], ["gateway-3", "url", "/path"]])
def test_main_with_too_few_arguments_prints_the_usage(argv, capsys):
    assert main(argv) == 2
    assert "--withdraw NAME PATH PEER_URL..." in capsys.readouterr().err
