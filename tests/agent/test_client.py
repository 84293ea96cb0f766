"""How the client sorts answers: retry later (Unavailable) or refused for good (Rejected).

The portal never answers 5xx or 429 on purpose, so a tiny stdlib server plays those parts.
"""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from portal_agent.client import PortalClient, Rejected, Unavailable


class Canned(BaseHTTPRequestHandler):
    status, body_out, headers_out = 200, b"{}", {}

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(self.status)
        for name, value in {"Content-Type": "application/json", **self.headers_out}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(self.body_out)

    def log_message(self, *args):
        pass


@pytest.fixture
def canned():
    """``canned(status, body, headers)`` starts a server that always answers that; gives its URL."""
    servers = []

    def start(status, body=b"{}", headers=None):
        handler = type(
            "H", (Canned,), {"status": status, "body_out": body, "headers_out": headers or {}}
        )
        server = HTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408, 401])
def test_server_trouble_is_unavailable(canned, status):
    with pytest.raises(Unavailable, match=f"HTTP {status}"):
        PortalClient(canned(status), "t").heartbeat()


def test_retry_after_header_is_passed_on(canned):
    with pytest.raises(Unavailable) as info:
        PortalClient(canned(429, headers={"Retry-After": "7"}), "t").heartbeat()
    assert info.value.retry_after == 7.0


@pytest.mark.parametrize("status", [400, 404, 409, 413, 422])
def test_client_error_is_rejected_with_the_error_code(canned, status):
    body = json.dumps({"error": {"code": "validation_error", "message": "bad"}}).encode()
    with pytest.raises(Rejected, match=f"{status} validation_error: bad"):
        PortalClient(canned(status, body), "t").heartbeat()


def test_html_error_page_is_still_sorted_by_status(canned):
    with pytest.raises(Unavailable, match="HTTP 502"):
        PortalClient(canned(502, b"<html>Bad Gateway</html>"), "t").heartbeat()


def test_nobody_listening_is_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(Unavailable, match="no connection to http://127.0.0.1"):
        PortalClient(f"http://127.0.0.1:{port}", "t").heartbeat()
