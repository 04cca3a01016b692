"""A broken client or an attacker sending nonsense gets a clear answer, never a server error: malformed bodies of
every kind on every POST and PUT (signed in, with a valid CSRF token and API key, and without), any bytes at all in
a multipart field (property-based), and ids in URLs that are no ids."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from tests.api_support import new_key
from tests.support import all_routes, concrete, sign_in


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
    key = new_key(database_url, "attacker")
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


@pytest.mark.parametrize("bad_id", ["abc", "-1", "0", "1e3", "99999999999999999999999", "１２"])
def test_bad_ids_in_urls_are_404_not_500(app_client: TestClient, bad_id: str) -> None:
    sign_in(app_client, "b1", target="m1")
    for path in (f"/chat/c/{bad_id}", f"/chat/c/{bad_id}/messages", f"/files/{bad_id}", f"/chat/c/{bad_id}/item"):
        assert app_client.get(path).status_code == 404, path
