"""Who may see and do what: every route needs the identity it asks for, participants only, signed-in people only,
every POST a page can make needs the page's CSRF token, no demo sign-in unless demo mode is on, and friendly
Chinese error pages."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from litestar.testing import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.chat.people import upsert_user
from app.chat.sessions import start_session
from app.db.models import Conversation, Member, Message
from app.main import create_app
from tests.conftest import make_settings
from tests.dom import parse
from tests.seeding import converse, count, say
from tests.support import TEST_SECRET, all_routes, concrete, csrf_of, sign_in

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

COOKIE = "kefu_session"
HUGE = "99999999999999999999"


def watermarks(db: Session, cid: int) -> dict[str, int]:
    db.rollback()
    rows = db.scalars(select(Member).where(Member.conversation_id == cid))
    return {member.user_id: member.last_read_message_id for member in rows}


def assert_error_page(response: httpx.Response, status: int, *words: str) -> None:
    """A whole HTML page in Chinese that says what went wrong, and nothing of the server's insides."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert '<html lang="zh-CN">' in response.text
    box = parse(response.text).one(testid="error")
    assert box.get("data-status") == str(status)
    for word in words:
        assert word in box.text(), box.text()
    for leak in ("Traceback", "Exception", 'File "', "sqlalchemy", "litestar"):
        assert leak not in response.text


def participant_routes(cid: int | str) -> list[tuple[str, str, dict[str, str]]]:
    """Every route of one conversation: method, path and form data."""
    return [
        ("GET", f"/chat/c/{cid}", {}),
        ("GET", f"/chat/c/{cid}/messages", {}),
        ("GET", f"/chat/c/{cid}/item", {}),
        ("POST", f"/chat/c/{cid}/messages", {"body": "我是来偷看的"}),
        ("POST", f"/chat/c/{cid}/read", {"up_to": "1"}),
    ]


def call(client: TestClient, method: str, path: str, data: dict[str, str], token: str,
         headers: dict[str, str] | None = None) -> httpx.Response:
    headers = {"X-CSRFToken": token} | (headers or {})
    if method == "GET":
        return client.get(path, headers=headers)
    return client.post(path, data=data, headers=headers)


def forged_cookie(people: list[tuple[str, str]] | str, key: str = TEST_SECRET, age_seconds: int = 0) -> str:
    """A session cookie as the server would write it ((user id, session token) pairs), optionally with another
    key or from long ago."""

    class AgedSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age_seconds

    entries = people if isinstance(people, str) else [list(entry) for entry in people]
    return URLSafeTimedSerializer(key, salt="kefu-session", signer=AgedSigner).dumps({"s": entries})


def session_token(cookie: str, user_id: str) -> str:
    """The session token a real cookie holds for `user_id`."""
    data = URLSafeTimedSerializer(TEST_SECRET, salt="kefu-session").loads(cookie)
    return next(token for uid, token in data["s"] if uid == user_id)


def with_cookie(client: TestClient, value: str) -> None:
    client.cookies.clear()
    client.cookies.set(COOKIE, value)


@pytest.fixture
def demo_off_client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(make_settings(database_url, tmp_path, demo=False))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client


def test_someone_outside_the_conversation_gets_403_and_changes_nothing(db: Session, app_client: TestClient) -> None:
    cid = converse(db, "b1", "m1")
    first = say(db, cid, "b1", "私下的报价")
    say(db, cid, "m1", "八折")
    before = watermarks(db, cid)
    for intruder in ("b2", "m2", "p1"):
        app_client.cookies.clear()
        token = sign_in(app_client, intruder)
        for method, path, data in participant_routes(cid):
            response = call(app_client, method, path, data, token)
            assert_error_page(response, 403, "没有权限")
            assert "私下的报价" not in response.text and "八折" not in response.text
            fragment = call(app_client, method, path, data, token, {"HX-Request": "true"})
            assert fragment.status_code == 403
            assert parse(fragment.text).one(testid="error").get("data-status") == "403"
        older = app_client.get(f"/chat/c/{cid}/messages", params={"before": str(first + 10)})
        assert older.status_code == 403
        page = app_client.get("/chat").text
        assert parse(page).find_all(testid="conversation") == []  # and it is not in their list
    assert count(db, Message) == 2
    assert watermarks(db, cid) == before


def test_a_participant_may_do_all_of_it(db: Session, app_client: TestClient) -> None:
    """The same requests succeed for a participant, so the 403s above are about who asks."""
    cid = converse(db, "b1", "m1")
    say(db, cid, "b1", "一")
    token = sign_in(app_client, "m1")
    expected = {"GET": 200, "POST": 201}
    for method, path, data in participant_routes(cid):
        response = call(app_client, method, path, data, token)
        wanted = 204 if path.endswith("/read") else expected[method]
        assert response.status_code == wanted, (path, response.text)


def test_a_conversation_that_does_not_exist_is_404(db: Session, app_client: TestClient) -> None:
    cid = converse(db, "b1", "m1")
    token = sign_in(app_client, "b1")
    for method, path, data in participant_routes(cid + 1000):
        assert_error_page(call(app_client, method, path, data, token), 404, "找不到页面")
    assert count(db, Message) == 0


def test_nonsense_conversation_ids_are_404(db: Session, app_client: TestClient) -> None:
    converse(db, "b1", "m1")
    token = sign_in(app_client, "b1")
    for cid in ("abc", "0", "-1", "1.0", "1e3", "0x1", "+1", HUGE, "9223372036854775808", "١"):
        for method, path, data in participant_routes(cid):
            assert_error_page(call(app_client, method, path, data, token), 404, "找不到页面")
    assert count(db, Message) == 0


def test_no_one_signed_in_gets_401_on_every_page_and_the_event_stream(db: Session, app_client: TestClient) -> None:
    cid = converse(db, "b1", "m1")
    say(db, cid, "b1", "一")
    page = app_client.get("/chat")
    assert_error_page(page, 401, "请先登录")
    token = csrf_of(page.text)  # even a valid CSRF token does not sign anyone in
    for method, path, data in [*participant_routes(cid), ("GET", "/chat/list", {}), ("GET", "/events", {})]:
        assert_error_page(call(app_client, method, path, data, token), 401, "请先登录")
    assert_error_page(app_client.get("/chat", params={"target": "m1"}), 401, "请先登录")
    assert count(db, Message) == 1
    assert count(db, Conversation) == 1


def test_a_post_without_sign_in_or_csrf_token_stores_nothing(db: Session, app_client: TestClient) -> None:
    cid = converse(db, "b1", "m1")
    response = app_client.post(f"/chat/c/{cid}/messages", data={"body": "hi"})
    assert response.status_code in {401, 403}
    assert "Traceback" not in response.text
    assert count(db, Message) == 0


def test_a_tampered_session_cookie_counts_as_not_signed_in(db: Session, app_client: TestClient) -> None:
    upsert_user(db, "root1", "管理员", "admin")
    db.commit()
    sign_in(app_client, "b1", target="m1")
    real = app_client.cookies[COOKIE]
    token = session_token(real, "b1")  # every forgery below carries b1's real session: only the tampering fails
    payload, stamp, signature = real.rsplit(".", 2)
    other_payload = forged_cookie([("m1", token)]).rsplit(".", 2)[0]
    cookies = {
        # The first character: all six of its bits count (the last one's low bits are padding, and some flips of
        # it decode to the same signature: this test once failed that way).
        "flip-signature": f"{payload}.{stamp}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}",
        "swap-person": f"{other_payload}.{stamp}.{signature}",
        "wrong-key": forged_cookie([("b1", token)], key="not-the-servers-key-0123456789-0123456789"),
        "expired": forged_cookie([("b1", token)], age_seconds=31 * 24 * 3600),
        "garbage": "not-a-session",
        "unknown-person": forged_cookie([("nobody", token)]),
        "admin": forged_cookie([("root1", token)]),
        "m1-with-b1s-session": forged_cookie([("m1", token)]),
        "no-such-session": forged_cookie([("b1", "x" * 43)]),
        "not-a-list": forged_cookie("b1"),
        "old-format": URLSafeTimedSerializer(TEST_SECRET, salt="kefu-session").dumps({"p": ["b1"]}),
    }
    for tamper, value in cookies.items():
        with_cookie(app_client, value)
        response = app_client.get("/chat")
        assert response.status_code == 401, tamper
        assert_error_page(response, 401, "请先登录")
        assert app_client.get("/events").status_code == 401, tamper


def test_a_well_forged_cookie_works_so_the_tampering_test_means_something(db: Session,
                                                                        app_client: TestClient) -> None:
    token = start_session(db, "b1", 30 * 24 * 3600)
    db.commit()
    with_cookie(app_client, forged_cookie([("b1", token)], age_seconds=29 * 24 * 3600))
    page = app_client.get("/chat")
    assert page.status_code == 200
    assert parse(page.text).one(tag="body").get("data-user-id") == "b1"


def test_acting_as_someone_not_signed_in_in_this_browser_is_401(db: Session, app_client: TestClient) -> None:
    cid = converse(db, "b1", "m1")
    token = sign_in(app_client, "b1")
    for someone in ("m1", "b2", "nobody", "<b>"):
        assert_error_page(app_client.get("/chat", headers={"X-Kefu-As": someone}), 401, "请先登录")
        assert_error_page(app_client.get("/chat", params={"as": someone}), 401, "请先登录")
        posted = app_client.post(f"/chat/c/{cid}/messages", data={"body": "冒充"},
                                 headers={"X-CSRFToken": token, "X-Kefu-As": someone})
        assert posted.status_code == 401
    assert app_client.get("/events", headers={"X-Kefu-As": "m1"}).status_code == 401
    assert count(db, Message) == 0
    assert app_client.get("/chat", headers={"X-Kefu-As": "b1"}).status_code == 200


def test_one_browser_may_hold_several_people_and_each_request_names_one(
    db: Session, app_client: TestClient
) -> None:
    with_b1 = converse(db, "b1", "m1")
    with_p1 = converse(db, "m1", "p1")
    sign_in(app_client, "b1")
    token = sign_in(app_client, "m1")  # the same cookie jar: now b1 and m1

    def acting(headers: dict[str, str] | None = None, params: dict[str, str] | None = None) -> str | None:
        page = app_client.get("/chat", headers=headers, params=params)
        assert page.status_code == 200
        return parse(page.text).one(tag="body").get("data-user-id")

    assert acting() == "m1"  # the last to sign in
    assert acting(headers={"X-Kefu-As": "b1"}) == "b1"
    assert acting(params={"as": "b1"}) == "b1"
    assert acting(headers={"X-Kefu-As": "m1"}) == "m1"

    page = app_client.get("/chat", params={"as": "b1"}).text
    assert parse(page).one(tag="meta", name="kefu-as").get("content") == "b1"
    item = parse(page).one(testid="conversation")
    assert item.get("href") == f"/chat/c/{with_b1}?as=b1"  # links keep acting for the same person

    sent = app_client.post(f"/chat/c/{with_b1}/messages", data={"body": "以买家身份"},
                           headers={"X-CSRFToken": token, "X-Kefu-As": "b1"})
    assert sent.status_code == 201
    assert parse(sent.text).one(testid="message").get("data-sender-id") == "b1"

    # Holding m1 too does not let b1 into m1's other conversations.
    assert_error_page(app_client.get(f"/chat/c/{with_p1}", headers={"X-Kefu-As": "b1"}), 403, "没有权限")
    assert app_client.get(f"/chat/c/{with_p1}", headers={"X-Kefu-As": "m1"}).status_code == 200
    refused = app_client.post(f"/chat/c/{with_p1}/messages", data={"body": "串门"},
                              headers={"X-CSRFToken": token, "X-Kefu-As": "b1"})
    assert refused.status_code == 403
    assert count(db, Message) == 1


def test_a_pair_that_may_not_talk_gets_a_400_page_and_no_conversation(db: Session, app_client: TestClient) -> None:
    for me, target in (("b1", "b2"), ("m1", "m2"), ("b1", "b1"), ("p1", "p1")):
        app_client.cookies.clear()
        sign_in(app_client, me)
        response = app_client.get("/chat", params={"target": target})
        assert response.status_code == 400, (me, target)
        assert_error_page(response, 400, "请求有误", "不能发起会话")
    assert count(db, Conversation) == 0


def test_a_demo_sign_in_with_a_pair_that_may_not_talk_is_a_400_page(db: Session, app_client: TestClient) -> None:
    response = app_client.get("/chat", params={"user_id": "b1", "target": "b2"}, follow_redirects=True)
    assert_error_page(response, 400, "保安堂药房和异世界药局之间不能发起会话")
    assert count(db, Conversation) == 0


def test_an_unknown_target_is_a_404_page(db: Session, app_client: TestClient) -> None:
    upsert_user(db, "root1", "管理员", "admin")  # admins are not someone to chat with
    db.commit()
    sign_in(app_client, "b1")
    for target in ("nobody", "root1", "<script>alert(1)</script>", "a" * 65, "张三"):
        response = app_client.get("/chat", params={"target": target})
        assert response.status_code == 404, target
        assert_error_page(response, 404, "找不到要联系的人")
        assert "<script>alert" not in response.text
    assert count(db, Conversation) == 0


def test_target_user_id_is_an_alias_of_target(db: Session, app_client: TestClient) -> None:
    sign_in(app_client, "b1")
    page = app_client.get("/chat", params={"target_user_id": "m1"}, headers={"Sec-Fetch-Site": "same-origin"})
    assert page.status_code == 200
    assert parse(page.text).one(testid="thread").get("data-peer-id") == "m1"
    assert_error_page(app_client.get("/chat", params={"target_user_id": "b2"}), 400, "不能发起会话")


def test_demo_sign_in_as_someone_unknown_is_a_404_page(db: Session, app_client: TestClient) -> None:
    upsert_user(db, "root1", "管理员", "admin")
    db.commit()
    for user_id in ("nobody", "root1", "<b>x</b>"):
        response = app_client.get("/chat", params={"user_id": user_id})
        assert response.status_code == 404, user_id
        assert_error_page(response, 404, "没有这个演示用户")
        assert "<b>x</b>" not in response.text
        assert COOKIE not in app_client.cookies


def test_demo_sign_in_when_demo_is_off_is_a_403_page(db: Session, demo_off_client: TestClient) -> None:
    response = demo_off_client.get("/chat", params={"user_id": "b1", "target": "m1"})
    assert_error_page(response, 403, "没有权限", "演示登录已关闭")
    assert COOKIE not in demo_off_client.cookies
    assert_error_page(demo_off_client.get("/chat"), 401, "请先登录")
    assert count(db, Conversation) == 0


def test_a_bad_sign_in_link_is_a_403_page(app_client: TestClient) -> None:
    response = app_client.get("/chat", params={"token": "forged.token.value"})
    assert_error_page(response, 403, "登录链接无效或已过期")
    assert COOKIE not in app_client.cookies


def test_a_get_from_another_site_starts_no_conversation_and_asks_instead(db: Session, app_client: TestClient) -> None:
    """A page on another site links to /chat?target=m1: the signed-in visitor must not appear in m1's list."""
    sign_in(app_client, "b1")
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}, {},
                    {"Referer": "https://evil.example/"}):
        asked = app_client.get("/chat", params={"target": "m1"}, headers=headers)
        assert asked.status_code == 200
        assert parse(asked.text).one(testid="start-peer").get("data-user-id") == "m1"
    assert count(db, Conversation) == 0
    token = csrf_of(asked.text)
    assert app_client.post("/chat/start", data={"target": "m1"}, follow_redirects=False).status_code == 403
    started = app_client.post("/chat/start", data={"target": "m1", "_csrf_token": token}, follow_redirects=False)
    assert started.status_code == 303
    assert count(db, Conversation) == 1
    opened = app_client.get(started.headers["location"])  # and an existing conversation opens from anywhere
    assert parse(opened.text).one(testid="thread").get("data-peer-id") == "m1"


def test_starting_conversations_is_limited_per_person(db: Session, app_client: TestClient) -> None:
    for n in range(31):
        upsert_user(db, f"shop{n}", f"商家{n}", "merchant")
    db.commit()
    sign_in(app_client, "b1")
    same_site = {"Sec-Fetch-Site": "same-origin"}
    statuses = [app_client.get("/chat", params={"target": f"shop{n}"}, headers=same_site).status_code
                for n in range(31)]
    assert statuses == [200] * 30 + [429]
    assert count(db, Conversation) == 30


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
        location = response.headers.get("location", "")
        if path.startswith("/admin"):  # an admin page: to the sign-in page, and back here afterwards
            expected = (303, "/login?")
        elif path == "/chat/sign-in":  # confirming a sign-in link, with no link: the link is refused
            expected = (403, "")
        else:
            expected = (401, "")
        if (response.status_code, location[: len(expected[1])]) != expected:
            unexpectedly_open.append((method, path, response.status_code, location))
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


def test_demo_sign_in_is_refused_without_demo_mode(database_url: str, tmp_path: Path) -> None:
    app = create_app(make_settings(database_url, tmp_path, demo=False))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        response = client.get("/chat", params={"user_id": "b1"})
        assert response.status_code == 403
        assert client.get("/chat").status_code == 401
