"""Only a live API key opens the integration API (/api/v1), and `kefu apikey` is how ops hand keys out and take them
back, on SQLite and MariaDB, through the real app.

What a marketplace relies on: a missing, malformed, made-up or revoked key gets 401 JSON with a Bearer challenge,
and changes nothing; a key revoked while the app runs is refused from the next request; a typo in a path or a
method gets the API's JSON error, not the chat's HTML page. What ops rely on: `kefu apikey create` prints the key
once (it is stored hashed), `list` never shows it, `revoke` stops it at once, and a mistake is one clear line.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from litestar.testing import TestClient
from sqlalchemy import select

from app.chat.api_keys import revoke_key
from app.db.models import ApiKey
from app.main import create_app
from tests.api_support import BASE_URL, Api, assert_error, new_key
from tests.cli_support import assert_one_line_error, kefu
from tests.conftest import make_settings
from tests.seeding import with_session


def test_requests_without_a_valid_key_get_401_json(api: Api) -> None:
    other = new_key(api.database_url, "old-shop")
    with with_session(api.database_url) as session:
        revoke_key(session, "old-shop")
        session.commit()
    refused = {
        "no header": {},
        "another scheme": {"Authorization": f"Basic {api.key}"},
        "no key": {"Authorization": "Bearer "},
        "a key one character off": {"Authorization": f"Bearer {api.key[:-1]}{'A' if api.key[-1] != 'A' else 'B'}"},
        "a made-up key": {"Authorization": "Bearer kefu_not-a-real-key"},
        "a revoked key": {"Authorization": f"Bearer {other}"},
    }
    for case, headers in refused.items():
        for response in (api.client.get("/api/v1/users/b1", headers=headers),
                         api.client.post("/api/v1/conversations", json={"user_ids": ["b1", "m1"]}, headers=headers)):
            assert response.status_code == 401, f"{case}: {response.status_code} {response.text}"
            assert_error(response, 401, "unauthorized")
            assert response.headers.get("www-authenticate", "").lower().startswith("bearer"), case
    assert api.get("/api/v1/conversations").json()["items"] == []  # no refused request opened one
    assert api.get("/api/v1/users/b1").status_code == 200
    assert api.client.get("/api/v1/users/b1", headers={"Authorization": f"bearer {api.key}"}).status_code == 200

    with with_session(api.database_url) as session:  # revoked while the app runs: refused from the next request
        revoke_key(session, "shop")
        session.commit()
    assert_error(api.get("/api/v1/users/b1"), 401, "unauthorized")
    with with_session(api.database_url) as session:
        assert session.scalar(select(ApiKey.id).where(ApiKey.name == "shop")) is not None  # refused, not deleted


def test_unknown_api_paths_and_methods_get_json_errors_too(sqlite_url: str, tmp_path: Path) -> None:
    """A client with a typo in its path or method gets the API's JSON error, not the chat's HTML page."""
    key = new_key(sqlite_url)
    with TestClient(create_app(make_settings(sqlite_url, tmp_path)), base_url=BASE_URL) as client:
        auth = {"Authorization": f"Bearer {key}"}
        assert_error(client.get("/api/v1/user/b1", headers=auth), 404, "not_found")
        assert_error(client.get("/api/v1/nothing-here"), 404, "not_found")
        assert_error(client.delete("/api/v1/users/b1", headers=auth), 405, "method_not_allowed")
        assert client.get("/api/v1/users/b1", headers=auth).json()["id"] == "b1"  # still there


def test_apikey_create_prints_the_key_once_list_never_shows_it_and_revoke_stops_it(
        database_url: str, tmp_path: Path) -> None:
    created = kefu(database_url, tmp_path, "apikey", "create", "shop")
    assert created.code == 0, created.err
    key = created.out.strip()
    assert "\n" not in key and key.startswith("kefu_") and len(key) >= 40
    with with_session(database_url) as session:  # stored hashed, never as itself
        record = session.scalar(select(ApiKey).where(ApiKey.name == "shop"))
        assert record is not None
        assert record.key_hash == hashlib.sha256(key.encode()).hexdigest()
        assert key not in (record.name, record.prefix, record.key_hash)

    again = kefu(database_url, tmp_path, "apikey", "create", "shop")
    assert_one_line_error(again, "shop")

    app = create_app(make_settings(database_url, tmp_path))
    with TestClient(app, base_url=BASE_URL) as client:
        auth = {"Authorization": f"Bearer {key}"}
        assert client.get("/api/v1/users/b1", headers=auth).status_code == 200

        listed = kefu(database_url, tmp_path, "apikey", "list")
        assert listed.code == 0, listed.err
        assert "shop" in listed.out and "active" in listed.out
        assert key not in listed.out and key[12:24] not in listed.out  # at most the public prefix

        revoked = kefu(database_url, tmp_path, "apikey", "revoke", "shop")
        assert revoked.code == 0, revoked.err
        assert_error(client.get("/api/v1/users/b1", headers=auth), 401, "unauthorized")

    listed = kefu(database_url, tmp_path, "apikey", "list")
    assert "shop" in listed.out and "revoked" in listed.out and key not in listed.out
    unknown = kefu(database_url, tmp_path, "apikey", "revoke", "nosuch")
    assert_one_line_error(unknown, "nosuch")
