"""Requests too big to be honest are refused before they cost anything, and the server keeps serving: query values,
headers and request lines (in one read or many), bodies larger than the route needs (refused with 413 before
parsing, while the longest real message still fits), and an endless sign-in body without a length (cut off at the
route's limit, for almost no CPU)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import httpx
from litestar.testing import TestClient

from tests.support import ServerProcess, free_port, server_env, sign_in, sign_in_to

# path: a body size, in bytes, it refuses: twice the most an honest request needs (a few short fields; 500 characters
# of a quick reply, 5,000 of a message, percent-encoded at 9 bytes a character; the API's JSON at 12)
ROUTE_LIMITS = {
    "/login": 8 * 1024, "/logout": 8 * 1024, "/chat/c/1/read": 8 * 1024,
    "/chat/c/1/messages": 128 * 1024, "/chat/quick-replies": 32 * 1024, "/api/v1/conversations": 128 * 1024,
}


def test_oversized_query_values_are_refused_cleanly(app_client: TestClient) -> None:
    sign_in(app_client, "b1", target="m1")
    response = app_client.get("/chat", params={"target": "m" * 5000})
    assert response.status_code == 400
    assert "Traceback" not in response.text


def test_oversized_headers_are_refused_and_the_server_keeps_serving(sqlite_url: str, tmp_path: Path) -> None:
    server = ServerProcess(server_env(sqlite_url, tmp_path), free_port()).start()
    try:
        heads = [  # in one piece (one read) and in many; a header and a request line
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
            b"GET /healthz?q=" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        ]
        for head in heads:
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(head)
                assert sock.recv(100).startswith(b"HTTP/1.1 400"), len(head)
        assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
    finally:
        server.stop()


def test_each_route_refuses_a_body_larger_than_it_needs_before_parsing_it(app_client: TestClient) -> None:
    token, cid = sign_in_to(app_client, "m1", "b1")
    for path, limit in ROUTE_LIMITS.items():
        body = b"body=" + b"a" * limit
        response = app_client.post(path.replace("/c/1/", f"/c/{cid}/"), content=body, headers={
            "X-CSRFToken": token, "Content-Type": "application/x-www-form-urlencoded"})
        assert response.status_code == 413, (path, response.status_code)
    longest = "好" * 5000  # the longest message there is still fits, percent-encoded
    sent = app_client.post(f"/chat/c/{cid}/messages", data={"body": longest}, headers={"X-CSRFToken": token})
    assert sent.status_code == 201, sent.text
    longest_reply = "好" * 500  # and so does the longest quick reply
    added = app_client.post("/chat/quick-replies", data={"body": longest_reply, "cid": str(cid)},
                            headers={"X-CSRFToken": token})
    assert added.status_code == 200 and 'data-testid="quick-reply-error"' not in added.text, added.text


def test_a_huge_sign_in_body_without_a_length_costs_the_server_almost_nothing(sqlite_url: str, tmp_path: Path) -> None:
    """11 MB sent in chunks (no Content-Length) to POST /login: cut off at the route's limit."""
    server = ServerProcess(server_env(sqlite_url, tmp_path), free_port()).start()

    def cpu_seconds() -> float:
        fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def chunks():  # type: ignore[no-untyped-def]
        yield b"username="
        for _ in range(11 * 16):
            yield b"a" * 65536

    try:
        before = cpu_seconds()
        with httpx.Client(base_url=server.url, timeout=10) as client:
            response = client.post("/login", content=chunks(), headers={
                "Content-Type": "application/x-www-form-urlencoded"})
            assert response.status_code == 413
            assert client.get("/healthz").status_code == 200
        assert cpu_seconds() - before < 0.5
    finally:
        server.stop()
