"""Opening a sign-in link, on SQLite and MariaDB: how a marketplace's customers get into the chat from its site.

What people rely on: a link signs its person in (created on first use, renamed as the marketplace renames them) and
opens the conversation with its target, and the token leaves the address bar; a forged, expired, truncated or admin
link, or one signed with another key, is a 403 page and signs no one in; a token never reaches the access log.

A page on another site can send the browser to `/chat?token=<the attacker's own link>` (login CSRF): the victim's
later tabs would then act for the attacker, who reads what the victim types. So a link that arrives from another
site while someone else is signed in here asks first, naming both people, and only a POST from that page (with
its CSRF token) signs the new person in. From this site, typed or bookmarked, or with no one else signed in, a
link signs in at once as before.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from litestar.testing import TestClient
from sqlalchemy.orm import Session

from app.chat.links import LinkIdentity, make_token
from app.db.models import User
from tests.admin_support import make_admin, sign_in_admin, use_fast_hashing
from tests.dom import parse
from tests.support import TEST_SECRET, ServerProcess, csrf_of, free_port, server_env, sign_in

ORIGIN = "http://127.0.0.1"
FROM_ELSEWHERE = {
    "a cross-site navigation": {"Sec-Fetch-Site": "cross-site"},
    "an old browser, from another site": {"Referer": "https://evil.example/page"},
    "an old browser, no referrer at all": {},
    "a lookalike origin": {"Referer": "http://127.0.0.1.evil.example/"},
    "a sibling subdomain (same site, not this origin)": {"Sec-Fetch-Site": "same-site"},
}
FROM_HERE = {
    "typed or bookmarked": {"Sec-Fetch-Site": "none"},
    "a link on this site": {"Sec-Fetch-Site": "same-origin"},
    "an old browser, from this site": {"Referer": f"{ORIGIN}/chat"},
}


def link_for(user_id: str, name: str, role: str = "buyer", target: str | None = None, ttl: int = 300,
             secret: str = TEST_SECRET) -> str:
    """A sign-in link's token as `kefu link` (or a marketplace with the secret key) makes it."""
    return make_token(secret, LinkIdentity(user_id, name, role, target), ttl)


def acting(client: TestClient) -> str | None:
    """Whom a new tab (no `as`) acts for."""
    page = client.get("/chat")
    return parse(page.text).one(tag="body").get("data-user-id") if page.status_code == 200 else None


def open_link(client: TestClient, token: str, headers: dict[str, str]) -> httpx.Response:
    return client.get("/chat", params={"token": token}, headers=headers, follow_redirects=False)


def test_a_signed_link_signs_in_creates_the_person_and_drops_the_token(app_client: TestClient) -> None:
    token = link_for("shop-42", "新开的药店", target="m1")
    response = app_client.get("/chat", params={"token": token}, follow_redirects=False)
    assert response.status_code == 303
    assert "token" not in response.headers["location"]
    page = app_client.get(response.headers["location"])
    assert page.status_code == 200
    assert "新开的药店" in page.text and 'data-peer-id="m1"' in page.text
    # the same person again, renamed by the marketplace
    renamed = link_for("shop-42", "改名后的药店")
    app_client.get("/chat", params={"token": renamed})
    assert "改名后的药店" in app_client.get("/chat").text


@pytest.mark.parametrize("case", ["forged", "expired", "other-secret", "truncated", "admin-role"])
def test_bad_links_get_a_403_page(app_client: TestClient, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    good = link_for("b1", "保安堂药房")
    with monkeypatch.context() as earlier:  # signed two seconds ago, good for one: expired a second ago
        earlier.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 2)
        expired = link_for("b1", "保安堂药房", ttl=1)
    token = {
        "forged": good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"),
        "expired": expired,
        "other-secret": link_for("b1", "保安堂药房", secret="another-secret-key"),
        "truncated": good[:20],
        "admin-role": good,
    }[case]
    if case == "admin-role":
        token = URLSafeTimedSerializer(TEST_SECRET, salt="kefu-link").dumps({"u": "x1", "n": "x", "r": "admin",
                                                                             "ttl": 300})
    response = app_client.get("/chat", params={"token": token})
    assert response.status_code == 403
    assert "登录链接无效或已过期" in response.text
    assert app_client.get("/chat").status_code == 401  # and nobody is signed in


def test_sign_in_tokens_never_reach_the_access_log(sqlite_url: str, tmp_path: Path) -> None:
    token = link_for("b9", "买家")
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


@pytest.mark.parametrize("case", FROM_ELSEWHERE)
def test_a_link_from_another_site_asks_before_it_signs_someone_else_in(case: str, db: Session,
                                                                       app_client: TestClient) -> None:
    sign_in(app_client, "b1")
    attacker = link_for("spy9", "小间谍")
    asked = open_link(app_client, attacker, FROM_ELSEWHERE[case])
    assert asked.status_code == 200, asked.text
    page = parse(asked.text)
    assert page.one(testid="current-person").get("data-user-id") == "b1"
    assert "保安堂药房" in page.one(testid="current-person").text()
    assert page.one(testid="incoming-person").get("data-user-id") == "spy9"
    assert "小间谍" in page.one(testid="incoming-person").text()
    assert page.one(testid="keep-current").get("href") == "/chat?as=b1"
    assert acting(app_client) == "b1"  # nothing changed by merely opening the link
    db.rollback()
    assert db.get(User, "spy9") is None


def test_continuing_on_the_question_page_signs_the_new_person_in(db: Session, app_client: TestClient) -> None:
    sign_in(app_client, "b1")
    token = link_for("b2", "异世界药局", target="m2")
    asked = open_link(app_client, token, FROM_ELSEWHERE["a cross-site navigation"])
    form = parse(asked.text).one(testid="sign-in-confirm-form")
    assert form.get("method") == "post" and form.get("action") == "/chat/sign-in"
    fields = {field.get("name"): field.get("value") for field in form.find_all(tag="input")}
    assert fields["_csrf_token"] == csrf_of(asked.text)

    without_csrf = app_client.post("/chat/sign-in", data={"token": token}, follow_redirects=False)
    assert without_csrf.status_code == 403
    assert acting(app_client) == "b1"

    done = app_client.post("/chat/sign-in", data=fields, follow_redirects=False)
    assert done.status_code == 303
    assert httpx.URL(done.headers["location"]).params == httpx.QueryParams({"target": "m2", "as": "b2"})
    assert acting(app_client) == "b2"
    assert app_client.get("/chat", params={"as": "b1"}).status_code == 200  # b1 is still signed in, too


@pytest.mark.parametrize("case", FROM_HERE)
def test_the_link_that_asks_from_another_site_signs_in_at_once_from_this_site(case: str,
                                                                                app_client: TestClient) -> None:
    sign_in(app_client, "b1")
    token = link_for("b2", "异世界药局")
    assert open_link(app_client, token, FROM_ELSEWHERE["a cross-site navigation"]).status_code == 200  # asks
    opened = open_link(app_client, token, FROM_HERE[case])
    assert opened.status_code == 303, opened.text
    assert acting(app_client) == "b2"


def test_a_link_from_another_site_asks_only_when_someone_else_is_signed_in(app_client: TestClient) -> None:
    cross_site = FROM_ELSEWHERE["a cross-site navigation"]
    assert open_link(app_client, link_for("b2", "异世界药局"), cross_site).status_code == 303  # no one here yet
    assert acting(app_client) == "b2"
    assert open_link(app_client, link_for("b2", "异世界药局"), cross_site).status_code == 303  # the same person
    assert open_link(app_client, link_for("b1", "保安堂药房"), cross_site).status_code == 200  # someone else
    assert acting(app_client) == "b2"


def test_a_bad_link_on_the_question_page_is_refused(app_client: TestClient) -> None:
    token = sign_in(app_client, "b1")
    for bad in ("", "not-a-token", link_for("b2", "异世界药局")[:-3], "x" * 2049):
        refused = app_client.post("/chat/sign-in", data={"token": bad, "_csrf_token": token},
                                  follow_redirects=False)
        assert refused.status_code == 403, bad[:20]
    too_long = app_client.post("/chat/sign-in", data={"token": "x" * 5000, "_csrf_token": token},
                               follow_redirects=False)
    assert too_long.status_code == 413  # more than the form of a sign-in ever holds (app/web/bodies.py)
    assert acting(app_client) == "b1"


def test_a_link_for_a_shop_with_a_long_chinese_name_signs_in(app_client: TestClient) -> None:
    """A 100-character name (the longest allowed) makes a token of several hundred characters: the link works."""
    name = "".join(chr(0x4E00 + 37 * n) for n in range(100))  # 100 different characters: nothing to compress
    token = link_for("pharmacy_20240001", name, target="m1")
    assert len(token) > 400  # twice the query limit it used to meet
    response = app_client.get("/chat", params={"token": token}, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert acting(app_client) == "pharmacy_20240001"


def test_a_link_from_another_site_asks_in_a_browser_where_an_admin_is_signed_in(
        db: Session, app_client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    use_fast_hashing(monkeypatch)
    make_admin(db, "a1", "ops")
    sign_in_admin(app_client, "ops")
    asked = open_link(app_client, link_for("spy9", "小间谍"), FROM_ELSEWHERE["a cross-site navigation"])
    assert asked.status_code == 200, asked.text
    assert parse(asked.text).one(testid="current-person").get("data-user-id") == "a1"
    db.rollback()
    assert db.get(User, "spy9") is None
