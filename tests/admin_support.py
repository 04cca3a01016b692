"""Helpers the admin tests share: cheap password hashing, admin accounts, and signing in at /login as a browser does."""

from __future__ import annotations

from http.cookies import Morsel, SimpleCookie

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy.orm import Session

from app.chat import admins
from tests.support import csrf_of

PASSWORD = "password123"
# The real parameters (64 MiB, 3 passes) cost about half a second a hash here; the behaviour under test does not
# depend on them, only on argon2 and on the parameters changing, so the tests hash with these instead.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
FAST_DUMMY_HASH = FAST_HASHER.hash("kefu-no-such-admin")


def use_fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admins, "hasher", FAST_HASHER)
    monkeypatch.setattr(admins, "_dummy_hash", lambda: FAST_DUMMY_HASH)


def make_admin(db: Session, user_id: str = "a1", username: str = "ops", password: str = PASSWORD) -> None:
    admins.create_admin(db, user_id, username, password)
    db.commit()


def post_login(client: httpx.Client, username: str, password: str, remember: bool = False,
               next_url: str | None = None) -> httpx.Response:
    """The login form filled in and sent, with the CSRF token the page carries."""
    page = client.get("/login", follow_redirects=False)
    assert page.status_code == 200, page.text
    data = {"username": username, "password": password, "_csrf_token": csrf_of(page.text)}
    if remember:
        data["remember"] = "1"
    if next_url is not None:
        data["next"] = next_url
    return client.post("/login", data=data, follow_redirects=False)


def sign_in_admin(client: httpx.Client, username: str = "ops", password: str = PASSWORD,
                  remember: bool = False) -> str:
    """Signs in at /login; returns the monitor page's CSRF token."""
    response = post_login(client, username, password, remember)
    assert response.status_code == 303, response.text
    page = client.get("/admin", follow_redirects=False)
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


def set_cookie(response: httpx.Response, name: str) -> Morsel[str] | None:
    """The response's raw Set-Cookie header for `name`, parsed, with its attributes."""
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        if name in jar:
            return jar[name]
    return None


def login_location(response: httpx.Response) -> str:
    """Where a redirect to the login page sends the browser back to (its `next`)."""
    assert response.status_code == 303, response.text
    location = httpx.URL(response.headers["location"])
    assert location.path == "/login", location
    return location.params.get("next", "")
