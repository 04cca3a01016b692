"""Tests that attack: every route without the identity it needs, CSRF on every POST, forged and expired
links, demo sign-in in production, headers, rate limits, and hostile message bodies (property-based)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient
from sqlalchemy.orm import Session

from app.chat.api_keys import create_key
from app.chat.links import LinkIdentity, make_token
from app.db.engine import make_engine
from app.main import create_app
from app.web import bodies
from tests.conftest import make_settings
from tests.file_samples import sign_in_to
from tests.support import TEST_SECRET, ServerProcess, SSEReader, csrf_of, free_port, server_env, sign_in

# The only routes anyone may reach without signing in, and why.
PUBLIC = {
    ("GET", "/"): "redirects to /chat",
    ("GET", "/healthz"): "for load balancers",
    ("GET", "/login"): "the admin sign-in form",
    ("POST", "/login"): "signing in",
    ("POST", "/logout"): "signing out (clears cookies only)",
    ("GET", "/static/{file_path:path}"): "CSS, JS, icons",
    ("HEAD", "/static/{file_path:path}"): "CSS, JS, icons",
    ("GET", "/docs"): "redirects to the API documentation",
    ("GET", "/redoc"): "redirects to the API documentation",
}
# The OpenAPI document and its two viewers, under /api but outside /api/v1, are public by design.
API_DOCS = re.compile(r"^/api(/openapi\.(json|yaml|yml)|/docs|/redoc|/[a-z0-9.-]+|/\{[a-z_]+:str\})?$")


def all_routes(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return sorted(
        (method, route.path)
        for route in app.routes
        for method in getattr(route, "methods", ())
        if method != "OPTIONS"  # Litestar's automatic CORS preflight answer: no data, no action
    )


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+):(str|int)\}", "1", path).replace("{file_path:path}", "css/kefu.css")


def test_every_route_needs_the_identity_it_asks_for(app_client: TestClient) -> None:
    app = app_client.app
    routes = all_routes(app)
    assert ("POST", "/chat/c/{cid:str}/messages") in routes  # the table is really the app's
    token = csrf_of(app_client.get("/login").text)  # a valid CSRF token, so that only identity is missing
    unexpectedly_open = []
    for method, path in routes:
        if (method, path) in PUBLIC or API_DOCS.match(path):
            continue
        response = app_client.request(method, concrete(path), headers={"X-CSRFToken": token},
                                      follow_redirects=False)
        to_login = response.status_code == 303 and response.headers["location"].startswith("/login")
        if response.status_code not in (401, 403) and not to_login:
            unexpectedly_open.append((method, path, response.status_code))
    assert unexpectedly_open == []


def test_every_post_route_refuses_a_missing_or_forged_csrf_token(app_client: TestClient) -> None:
    sign_in(app_client, "m1", target="b1")
    for method, path in all_routes(app_client.app):
        if method != "POST" or path.startswith("/api/v1"):
            continue  # the API takes no cookies (Bearer keys only), so it has nothing to forge
        for headers in ({}, {"X-CSRFToken": "forged"}):
            response = app_client.post(concrete(path), data={"body": "x", "username": "u", "password": "p"},
                                       headers=headers, follow_redirects=False)
            assert response.status_code == 403, (path, headers, response.status_code)


def _part(name: str, value: bytes, extra: bytes = b"") -> bytes:
    head = b'--XX\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n' + extra
    return head + b"\r\n" + value + b"\r\n"


MULTIPART = "multipart/form-data; boundary=XX"
MALFORMED: dict[str, tuple[str, bytes]] = {  # what a broken client or an attacker sends, with its content type
    "multipart field of raw bytes": (MULTIPART, _part("body", b"\x89\xff") + b"--XX--\r\n"),
    "multipart username of raw bytes": (MULTIPART, _part("username", b"\xff\xfe\xfd") + b"--XX--\r\n"),
    "multipart part with an unknown charset": (
        MULTIPART, _part("body", b"hi", b"Content-Type: text/plain; charset=no-such-charset\r\n") + b"--XX--\r\n"),
    "multipart without its closing boundary": (MULTIPART, _part("body", b"hi")),
    "multipart without a boundary": ("multipart/form-data", b"--XX\r\n\r\n"),
    "multipart that is not multipart": (MULTIPART, b"\x00\x01\x02" * 50),
    "form of raw bytes": ("application/x-www-form-urlencoded", b"body=\x89\xff&username=\xff&password=%FF%FE"),
    "form of percent-encoded garbage": ("application/x-www-form-urlencoded", b"body=%FF%FE%&&=%%&up_to=%FF"),
    "json cut short": ("application/json", b'{"body": "hi'),
    "json of raw bytes": ("application/json", b'{"body": "\xff\xfe"}'),
    "json of the wrong shape": ("application/json", b'[1, {"body": null}]'),
    "json nested a thousand deep": ("application/json", b"[" * 1000 + b"]" * 1000),
    "no content type": ("", b"\xff" * 10),
}


def test_malformed_bodies_on_every_route_never_give_a_500(app_client: TestClient, database_url: str) -> None:
    """Every POST and PUT, signed in and with a valid CSRF token (and the API with a valid key), with each malformed
    body: a clear 4xx, never a 500, before or after the CSRF check."""
    token = sign_in(app_client, "m1", target="b1")
    with Session(make_engine(database_url)) as db:
        _record, key = create_key(db, "attacker")
        db.commit()
    auth = {"X-CSRFToken": token, "Authorization": f"Bearer {key}"}
    failures = []
    for method, path in all_routes(app_client.app):
        if method not in ("POST", "PUT"):
            continue
        for case, (content_type, body) in MALFORMED.items():
            for headers in (auth, {}):
                sent = headers | ({"Content-Type": content_type} if content_type else {})
                response = app_client.request(method, concrete(path), content=body, headers=sent,
                                              follow_redirects=False)
                if response.status_code >= 500:
                    failures.append((method, path, case, bool(headers), response.status_code))
    assert failures == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.binary(max_size=64), name=st.binary(min_size=1, max_size=16))
def test_any_bytes_in_a_multipart_field_get_an_answer_not_a_500(app_client: TestClient, value: bytes,
                                                                 name: bytes) -> None:
    token = sign_in(app_client, "b1", target="m1")
    body = b'--XX\r\nContent-Disposition: form-data; name="' + name.replace(b'"', b"") + b'"\r\n\r\n' + value
    response = app_client.post("/chat/c/1/messages", content=body + b"\r\n--XX--\r\n",
                               headers={"Content-Type": MULTIPART, "X-CSRFToken": token})
    assert response.status_code < 500, response.text


def link_token(identity: LinkIdentity, ttl: int = 300, secret: str = TEST_SECRET) -> str:
    return make_token(secret, identity, ttl)


def test_a_signed_link_signs_in_creates_the_person_and_drops_the_token(app_client: TestClient) -> None:
    token = link_token(LinkIdentity("shop-42", "新开的药店", "buyer", target="m1"))
    response = app_client.get("/chat", params={"token": token}, follow_redirects=False)
    assert response.status_code == 303
    assert "token" not in response.headers["location"]
    page = app_client.get(response.headers["location"])
    assert page.status_code == 200
    assert "新开的药店" in page.text and 'data-peer-id="m1"' in page.text
    # the same person again, renamed by the marketplace
    renamed = link_token(LinkIdentity("shop-42", "改名后的药店", "buyer"))
    app_client.get("/chat", params={"token": renamed})
    assert "改名后的药店" in app_client.get("/chat").text


@pytest.mark.parametrize("case", ["forged", "expired", "other-secret", "truncated", "admin-role"])
def test_bad_links_get_a_403_page(app_client: TestClient, case: str) -> None:
    good = link_token(LinkIdentity("b1", "保安堂药房", "buyer"))
    token = {
        "forged": good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"),
        "expired": link_token(LinkIdentity("b1", "保安堂药房", "buyer"), ttl=1),
        "other-secret": link_token(LinkIdentity("b1", "保安堂药房", "buyer"), secret="another-secret-key"),
        "truncated": good[:20],
        "admin-role": good,
    }[case]
    if case == "expired":
        time.sleep(2.1)
    if case == "admin-role":
        from itsdangerous import URLSafeTimedSerializer

        token = URLSafeTimedSerializer(TEST_SECRET, salt="kefu-link").dumps({"u": "x1", "n": "x", "r": "admin",
                                                                             "ttl": 300})
    response = app_client.get("/chat", params={"token": token})
    assert response.status_code == 403
    assert "登录链接无效或已过期" in response.text
    assert app_client.get("/chat").status_code == 401  # and nobody is signed in


def test_demo_sign_in_is_refused_without_demo_mode(database_url: str, tmp_path: Path) -> None:
    app = create_app(make_settings(database_url, tmp_path, demo=False))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        response = client.get("/chat", params={"user_id": "b1"})
        assert response.status_code == 403
        assert client.get("/chat").status_code == 401


def test_security_headers_on_pages_errors_and_static_files(database_url: str, tmp_path: Path) -> None:
    app = create_app(make_settings(database_url, tmp_path, frame_ancestors="'self' https://shop.example"))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for path in ("/login", "/chat", "/static/js/kefu.js", "/healthz"):
            response = client.get(path)
            csp = response.headers["content-security-policy"]
            script_src = next(p for p in csp.split(";") if p.strip().startswith("script-src"))
            assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in csp
            assert "frame-ancestors 'self' https://shop.example" in csp
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"]


def test_cookies_are_secure_only_behind_a_trusted_https_proxy(database_url: str, tmp_path: Path) -> None:
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    trusted = create_app(make_settings(database_url, tmp_path, trusted_proxies=("testclient",)))
    with TestClient(trusted, base_url="http://127.0.0.1") as client:
        response = client.get("/chat", params={"user_id": "b1"}, headers=forwarded, follow_redirects=False)
        cookies = response.headers.get_list("set-cookie")
        assert cookies and all("secure" in c.lower() for c in cookies)
    untrusted = create_app(make_settings(database_url, tmp_path))
    with TestClient(untrusted, base_url="http://127.0.0.1") as client:
        response = client.get("/chat", params={"user_id": "b1"}, headers=forwarded, follow_redirects=False)
        assert not any("secure" in c.lower() for c in response.headers.get_list("set-cookie"))


def conversation_id(client: TestClient | httpx.Client, target: str) -> int:
    page = client.get("/chat", params={"target": target})
    return int(re.search(r'data-open-conversation="(\d+)"', page.text).group(1))  # type: ignore[union-attr]


def test_sending_too_fast_gets_429_and_stores_nothing_more(database_url: str, tmp_path: Path) -> None:
    app = create_app(make_settings(database_url, tmp_path, message_limit=(5, 10.0)))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        token = sign_in(client, "b1", target="m1")
        cid = conversation_id(client, "m1")
        statuses = [client.post(f"/chat/c/{cid}/messages", data={"body": f"第{n}条"},
                                headers={"X-CSRFToken": token}) for n in range(7)]
        assert [r.status_code for r in statuses] == [201] * 5 + [429] * 2
        assert "发送太频繁" in statuses[-1].text
        assert 0 < int(statuses[-1].headers["retry-after"]) <= 10
        page = client.get(f"/chat/c/{cid}").text
        assert page.count('data-testid="message"') == 5


def test_the_oldest_stream_is_closed_past_the_limit_per_person(sqlite_url: str, tmp_path: Path) -> None:
    from tests.support import ServerProcess

    server = ServerProcess(server_env(sqlite_url, tmp_path, KEFU_STREAMS_PER_PERSON="2"), free_port()).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as m1:
            sign_in(m1, "m1")
            with m1.stream("GET", "/events") as first:
                oldest = SSEReader(first)
                oldest.next_of("ping")
                with m1.stream("GET", "/events") as second, m1.stream("GET", "/events") as third:
                    newer = SSEReader(second)
                    newer.next_of("ping")
                    SSEReader(third).next_of("ping")
                    closed = oldest.next_of("closed")
                    assert closed.data == "too-many-streams"
                    with pytest.raises(EOFError):
                        oldest.next()
                    newer.next_of("ping")  # the newer ones stay open
    finally:
        server.stop()


@pytest.mark.parametrize("bad_id", ["abc", "-1", "0", "1e3", "99999999999999999999999", "１２"])
def test_bad_ids_in_urls_are_404_not_500(app_client: TestClient, bad_id: str) -> None:
    sign_in(app_client, "b1", target="m1")
    for path in (f"/chat/c/{bad_id}", f"/chat/c/{bad_id}/messages", f"/files/{bad_id}", f"/chat/c/{bad_id}/item"):
        assert app_client.get(path).status_code == 404, path


def test_oversized_query_values_are_refused_cleanly(app_client: TestClient) -> None:
    sign_in(app_client, "b1", target="m1")
    response = app_client.get("/chat", params={"target": "m" * 5000})
    assert response.status_code == 400
    assert "Traceback" not in response.text


HOSTILE = ["<script>alert(1)</script>", "\u202eevil\u202c", "a\x00b", "😀🧧" * 3, "<a href=javascript:x>x</a>"]
texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60) | st.sampled_from(
    HOSTILE
)


@pytest.fixture
def unlimited_client(database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The app with a rate limit far above what the examples send."""
    app = create_app(make_settings(database_url, tmp_path, message_limit=(100_000, 10.0)))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=texts)
def test_any_text_is_stored_and_shown_exactly_as_text_or_refused_clearly(unlimited_client: TestClient,
                                                                          body: str) -> None:
    import html

    from app.chat.errors import InvalidInput
    from app.chat.messages import clean_body

    app_client = unlimited_client
    token = sign_in(app_client, "b1", target="m1")
    cid = conversation_id(app_client, "m1")
    response = app_client.post(f"/chat/c/{cid}/messages", data={"body": body}, headers={"X-CSRFToken": token})
    try:
        expected = clean_body(body)
    except InvalidInput:
        assert response.status_code == 422
        assert 'data-testid="composer-error"' in response.text
        return
    assert response.status_code == 201, response.text
    bubble = re.search(r'<div class="msg-bubble">(.*?)</div>', response.text, re.S)
    assert bubble is not None
    assert html.unescape(bubble.group(1)) == expected  # the text exactly, as text
    assert "<script" not in bubble.group(1) and "<a " not in bubble.group(1)
    message_id = re.search(r'data-message-id="(\d+)"', response.text).group(1)  # type: ignore[union-attr]
    page = app_client.get(f"/chat/c/{cid}").text
    stored = re.search(rf'data-message-id="{message_id}".*?<div class="msg-bubble">(.*?)</div>', page, re.S)
    assert stored is not None and html.unescape(stored.group(1)) == expected  # read back from the database


def test_oversized_headers_are_refused_and_the_server_keeps_serving(sqlite_url: str, tmp_path: Path) -> None:
    import socket

    from tests.support import ServerProcess

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


ROUTE_LIMITS = {  # path: the largest body it takes (app/web/bodies.py)
    "/login": bodies.SMALL_FORM, "/logout": bodies.SMALL_FORM, "/chat/c/1/read": bodies.SMALL_FORM,
    "/chat/c/1/messages": bodies.MESSAGE, "/chat/quick-replies": bodies.QUICK_REPLY_FORM,
    "/api/v1/conversations": bodies.DEFAULT,
}


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


def test_forwarded_headers_from_a_proxy_not_trusted_are_pointed_out_in_the_log(
        app_client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    """Behind nginx without KEFU_TRUSTED_PROXIES every client has the proxy's address: the log says so."""
    with caplog.at_level("WARNING", logger="kefu.security"):
        assert app_client.get("/healthz").status_code == 200
        assert "KEFU_TRUSTED_PROXIES" not in caplog.text
        assert app_client.get("/healthz", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 200
    assert "KEFU_TRUSTED_PROXIES" in caplog.text


def test_sign_in_tokens_never_reach_the_access_log(sqlite_url: str, tmp_path: Path) -> None:
    token = link_token(LinkIdentity("b9", "买家", "buyer"))
    server = ServerProcess(server_env(sqlite_url, tmp_path), free_port()).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.get("/chat", params={"token": token}, follow_redirects=False).status_code == 303
            assert client.get("/chat", params={"token": "garbage.token"}).status_code == 403
    finally:
        server.stop()
    log = (tmp_path / f"server-{server.port}.log").read_text()
    assert "token=[redacted]" in log
    assert token not in log and "garbage.token" not in log
