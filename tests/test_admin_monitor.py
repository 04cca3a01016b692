"""An admin watches every conversation at /admin, read-only, on SQLite and MariaDB, through the real app.

What admins rely on: every conversation is listed, newest activity first, with both people, their roles and
whether they are online, the last message and how many there are; filters by role and person and a search by
name or id narrow the list; opening a conversation shows its messages and no way to write; every write route
answers an admin with 403; looking never marks anything read for the people talking; the list comes in pages;
nonsense ids are 404; whoever is not an admin is sent to /login.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from litestar.testing import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.chat import conversations as convs
from app.chat.demo import seed_demo
from app.chat.people import upsert_user
from app.db.models import Conversation, Member, Message
from tests.admin_support import login_location, make_admin, sign_in_admin, use_fast_hashing
from tests.dom import Element, parse
from tests.seeding import converse, say_all
from tests.support import sign_in

ROLE_LABELS = {"买家": "buyer", "商家": "merchant", "官方客服": "support"}
NAMES = {"b1": "保安堂药房", "b2": "异世界药局", "m1": "保和堂医药集团", "m2": "阿纳斯蒂制药", "m3": "梅迪西斯制药",
         "p1": "官方客服"}
ADMIN_WRITE_TEXT = "管理员只能查看会话"


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fast_hashing(monkeypatch)


@pytest.fixture
def admin_token(app_client: TestClient, db: Session) -> str:
    """app_client signed in as admin "ops"; the CSRF token of its pages."""
    make_admin(db)
    return sign_in_admin(app_client)


@pytest.fixture
def four(db: Session) -> dict[str, int]:
    """Four conversations; by newest activity: b1–m1 (4 messages), m2–p1 (2), b2–p1 (1), b1–m3 (none)."""
    quiet = converse(db, "b1", "m3")
    shop = converse(db, "b1", "m1")
    invoice = converse(db, "b2", "p1")
    fees = converse(db, "m2", "p1")
    say_all(db, shop, "b1", "板蓝根颗粒还有货吗？")
    say_all(db, shop, "m1", "有的，今天就能发。")
    say_all(db, shop, "b1", "好的，下单了")
    say_all(db, invoice, "b2", "发票怎么开？")
    say_all(db, fees, "m2", "平台服务费有疑问")
    say_all(db, fees, "p1", "已收到，稍后回复您")
    say_all(db, shop, "m1", "已发货 🚚")
    return {"shop": shop, "fees": fees, "invoice": invoice, "quiet": quiet}


def rows_of(html: str) -> list[Element]:
    return parse(html).find_all(testid="conversation")


def listed(client: TestClient, **params: str) -> list[int]:
    response = client.get("/admin", params=params)
    assert response.status_code == 200, response.text
    return [int(row.get("data-conversation-id") or 0) for row in rows_of(response.text)]


def watermarks(db: Session) -> dict[tuple[int, str], int]:
    db.rollback()  # a fresh snapshot (MariaDB's repeatable read), nothing cached
    return {(m.conversation_id, m.user_id): m.last_read_message_id for m in db.scalars(select(Member))}


def message_count(db: Session) -> int:
    db.rollback()
    return db.scalar(select(func.count()).select_from(Message)) or 0


def test_every_conversation_is_listed_newest_activity_first_with_both_sides_and_who_is_online(
        app_client: TestClient, admin_token: str, four: dict[str, int]) -> None:
    presence = app_client.app.state.presence
    app_client.blocking_portal.call(presence.stream_opened, "m1")  # m1 has the chat open somewhere; no one else
    page = app_client.get("/admin")
    assert page.status_code == 200
    rows = rows_of(page.text)
    assert [int(row.get("data-conversation-id") or 0) for row in rows] == [
        four["shop"], four["fees"], four["invoice"], four["quiet"]]

    expected = {
        four["shop"]: ({"b1", "m1"}, "已发货 🚚", "4"),
        four["fees"]: ({"m2", "p1"}, "已收到，稍后回复您", "2"),
        four["invoice"]: ({"b2", "p1"}, "发票怎么开？", "1"),
        four["quiet"]: ({"b1", "m3"}, "", "0"),
    }
    for row in rows:
        people, last, count = expected[int(row.get("data-conversation-id") or 0)]
        parties = row.find_all(cls="party")
        assert len(parties) == 2
        seen = {}
        for party in parties:
            dot = party.one(testid="presence")
            user_id = dot.get("data-user-id") or ""
            assert dot.get("data-online") == ("true" if user_id == "m1" else "false")
            seen[user_id] = (party.one(cls="conv-name").text(), ROLE_LABELS[party.one(cls="role").text()])
        assert set(seen) == people
        for user_id, (name, role) in seen.items():
            assert name == NAMES[user_id]
            assert role == {"b": "buyer", "m": "merchant", "p": "support"}[user_id[0]]
        assert row.one(cls="conv-preview").text() == last
        assert row.one(testid="message-count").text() == count


def test_filters_by_role_and_person_and_search_by_name_or_id(app_client: TestClient, admin_token: str,
                                                             four: dict[str, int]) -> None:
    shop, fees, invoice, quiet = four["shop"], four["fees"], four["invoice"], four["quiet"]
    everything = [shop, fees, invoice, quiet]
    cases: list[tuple[dict[str, str], list[int]]] = [
        ({}, everything),
        ({"role": "buyer"}, [shop, invoice, quiet]),
        ({"role": "merchant"}, [shop, fees, quiet]),
        ({"role": "support"}, [fees, invoice]),
        ({"role": "admin"}, everything),  # not a role to filter by: ignored
        ({"person": "m1"}, [shop]),
        ({"person": "p1"}, [fees, invoice]),
        ({"person": "b1"}, [shop, quiet]),
        ({"person": "nobody"}, []),
        ({"q": "保和堂"}, [shop]),  # the start of a name
        ({"q": "纳斯蒂"}, [fees]),  # the middle of a name
        ({"q": "官方"}, [fees, invoice]),
        ({"q": "b"}, [shop, invoice, quiet]),  # the start of an id
        ({"q": "p1"}, [fees, invoice]),
        ({"q": "1"}, []),  # inside ids, but no id starts with it and no name holds it
        ({"q": "%"}, []),  # not a wildcard
        ({"q": "_"}, []),
        ({"q": "没有这个人"}, []),
        ({"role": "support", "q": "m2"}, [fees]),
        ({"person": "b1", "q": "梅迪"}, [quiet]),
        ({"role": "buyer", "person": "p1"}, [invoice]),
    ]
    for params, expected in cases:
        assert listed(app_client, **params) == expected, params

    page = parse(app_client.get("/admin", params={"role": "support", "person": "b1", "q": "保"}).text)
    form = page.one(testid="filters")
    assert form.one(tag="input", name="q").get("value") == "保"
    assert form.one(tag="input", name="person").get("value") == "b1"
    assert form.one(tag="option", value="support").has("selected")
    assert NAMES["b1"] in page.one(cls="filter-note").text()
    assert "没有符合条件的会话" in page.one(cls="list-empty").text()


def test_a_row_refreshed_live_keeps_to_the_filters(app_client: TestClient, db: Session, admin_token: str,
                                                   four: dict[str, int]) -> None:
    shop = four["shop"]
    upsert_user(db, "X9", "Acme Pharma", "merchant")
    db.commit()
    acme = converse(db, "b2", "X9")
    cases = [
        (shop, {}, True), (shop, {"role": "merchant"}, True), (shop, {"role": "support"}, False),
        (shop, {"person": "b1"}, True), (shop, {"person": "p1"}, False), (shop, {"q": "保和"}, True),
        (shop, {"q": "m1"}, True), (shop, {"q": "p"}, False),
        # A search ignores case, in the list and in the live row alike, on both databases.
        (acme, {"q": "Acme"}, True), (acme, {"q": "acme"}, True), (acme, {"q": "PHARMA"}, True),
        (acme, {"q": "x9"}, True), (acme, {"q": "X9"}, True), (shop, {"q": "B1"}, True), (acme, {"q": "ACMEX"}, False),
    ]
    for cid, params, shown in cases:
        response = app_client.get(f"/admin/c/{cid}/row", params=params, headers={"HX-Request": "true"})
        assert response.status_code == 200
        found = rows_of(response.text)
        assert [int(r.get("data-conversation-id") or 0) for r in found] == ([cid] if shown else []), params
        assert (cid in listed(app_client, **params)) == shown, params  # the same answer as the list


def test_opening_a_conversation_shows_its_messages_and_no_way_to_write(app_client: TestClient, admin_token: str,
                                                                       four: dict[str, int]) -> None:
    shop = four["shop"]
    full = app_client.get(f"/admin/c/{shop}")
    fragment = app_client.get(f"/admin/c/{shop}", headers={"HX-Request": "true"})
    assert full.status_code == 200 and fragment.status_code == 200
    for html in (full.text, fragment.text):
        tree = parse(html)
        thread = tree.one(testid="thread")
        assert thread.get("data-conversation-id") == str(shop)
        messages = thread.find_all(testid="message")
        assert [(m.get("data-sender-id"), m.one(cls="msg-bubble").text()) for m in messages] == [
            ("b1", "板蓝根颗粒还有货吗？"), ("m1", "有的，今天就能发。"), ("b1", "好的，下单了"), ("m1", "已发货 🚚")]
        assert all(m.get("data-conversation-id") == str(shop) for m in messages)
        assert tree.find_all(testid="composer") == []
        assert tree.find_all(tag="textarea") == []
        assert tree.find_all(testid="upload") == []
        assert tree.find_all(testid="quick-reply") == []
        assert not [f for f in tree.find_all(tag="form") if (f.get("action") or "").startswith("/chat")]
        assert tree.one(testid="readonly")
    page = parse(full.text)
    monitor = page.one(testid="monitor")
    assert monitor.find_all(testid="composer") == []
    assert {c.get("data-conversation-id") for c in monitor.find_all(testid="conversation")} == {
        str(cid) for cid in four.values()}  # the list stays beside the thread
    info = page.one(testid="col-info")
    assert NAMES["b1"] in info.text() and NAMES["m1"] in info.text()
    assert {dot.get("data-user-id"): dot.get("data-online") for dot in info.find_all(testid="presence")} == {
        "b1": "false", "m1": "false"}


def test_older_messages_of_a_long_conversation_come_in_pages(app_client: TestClient, db: Session,
                                                             admin_token: str) -> None:
    cid = converse(db, "b1", "m1")
    ids = say_all(db, cid, "b1", *(f"第 {n} 条" for n in range(1, 36)))
    page = parse(app_client.get(f"/admin/c/{cid}").text)
    shown = [int(m.get("data-message-id") or 0) for m in page.one(testid="thread").find_all(testid="message")]
    assert shown == ids[-30:]
    loader = page.one(testid="load-older")
    older = app_client.get(loader.get("hx-get") or "", headers={"HX-Request": "true"})
    assert older.status_code == 200
    tree = parse(older.text)
    assert [int(m.get("data-message-id") or 0) for m in tree.find_all(testid="message")] == ids[:5]
    assert tree.find_all(testid="load-older") == []
    assert tree.find_all(testid="composer") == []


def test_every_write_route_answers_an_admin_with_403(app_client: TestClient, db: Session, admin_token: str,
                                                     four: dict[str, int]) -> None:
    shop = four["shop"]
    before_messages, before_marks = message_count(db), watermarks(db)
    headers = {"X-CSRFToken": admin_token}
    sent = app_client.post(f"/chat/c/{shop}/messages", data={"body": "管理员插话"}, headers=headers)
    assert sent.status_code == 403
    assert ADMIN_WRITE_TEXT in sent.text
    as_form = app_client.post(f"/chat/c/{shop}/messages", data={"body": "管理员插话", "_csrf_token": admin_token})
    assert as_form.status_code == 403
    read = app_client.post(f"/chat/c/{shop}/read", data={"up_to": "999999"}, headers=headers)
    assert read.status_code == 403
    assert app_client.get(f"/chat/c/{shop}").status_code == 403  # nor the participants' own pages
    assert message_count(db) == before_messages
    assert watermarks(db) == before_marks
    # Nor when the same browser also holds a participant's session: admins write nothing.
    token = sign_in(app_client, "b1", target="m1")
    both = app_client.post(f"/chat/c/{shop}/messages", data={"body": "借买家之口"}, headers={"X-CSRFToken": token})
    assert both.status_code == 403
    assert message_count(db) == before_messages
    # The admin's token was a good one: the same token signs the admin out.
    assert app_client.post("/logout", data={"_csrf_token": admin_token}, follow_redirects=False).status_code == 303


def test_looking_as_an_admin_never_marks_anything_read(app_client: TestClient, db: Session,
                                                       admin_token: str) -> None:
    shop = converse(db, "b1", "m1")
    say_all(db, shop, "b1", "在吗？", "想问一下价格", "急！")
    help_desk = converse(db, "b2", "p1")
    say_all(db, help_desk, "p1", "您好，请问有什么可以帮您？", "订单已退款")
    marks = watermarks(db)
    assert convs.unread_counts(db, "m1") == {shop: 3}
    assert convs.unread_counts(db, "b2") == {help_desk: 2}

    hx = {"HX-Request": "true"}
    for path, headers in (("/admin", {}), (f"/admin/c/{shop}", {}), (f"/admin/c/{shop}", hx),
                          (f"/admin/c/{help_desk}", hx), (f"/admin/c/{shop}/row", hx),
                          (f"/admin/c/{shop}/messages?before=999999", hx), ("/admin/list", hx),
                          ("/admin?person=m1", {}), ("/admin/stats", {})):
        assert app_client.get(path, headers=headers).status_code == 200, path

    assert watermarks(db) == marks
    assert convs.unread_counts(db, "m1") == {shop: 3}
    assert convs.unread_counts(db, "b2") == {help_desk: 2}
    with TestClient(app_client.app, base_url="http://127.0.0.1") as merchant:  # what m1 sees in their own list
        sign_in(merchant, "m1")
        badge = parse(merchant.get(f"/chat/c/{shop}/item").text).one(testid="unread")
        assert badge.text() == "3"


def test_the_list_comes_in_pages_that_miss_nothing(app_client: TestClient, db: Session, admin_token: str) -> None:
    seed_demo(db, 40)
    db.commit()
    for_m1 = [converse(db, f"lb{n}", "m1") for n in range(1, 36)]
    others = [converse(db, f"lb{n}", "m2") for n in range(1, 4)]
    # All at the same moment: the order falls back to the newest conversation first, and no page may lose a tie.
    db.execute(update(Conversation).values(last_activity_at=datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)))
    db.commit()
    newest = converse(db, "lb40", "m1")  # created now: newer activity than all of them

    def all_pages(params: dict[str, str]) -> list[int]:
        page = parse(app_client.get("/admin", params=params).text)
        seen = [int(r.get("data-conversation-id") or 0) for r in page.find_all(testid="conversation")]
        assert len(seen) == 30
        more = page.find_all(cls="list-more")
        while more:
            url = more[0].get("hx-get") or ""
            for key, value in params.items():
                assert f"{key}={value}" in url  # the next page keeps the filter
            fragment = app_client.get(url, headers={"HX-Request": "true"})
            assert fragment.status_code == 200
            tree = parse(fragment.text)
            seen += [int(r.get("data-conversation-id") or 0) for r in tree.find_all(testid="conversation")]
            more = tree.find_all(cls="list-more")
        return seen

    assert all_pages({}) == [newest, *sorted(for_m1 + others, reverse=True)]
    assert all_pages({"person": "m1"}) == [newest, *sorted(for_m1, reverse=True)]


NONSENSE = [
    "/admin/c/abc", "/admin/c/0", "/admin/c/-1", "/admin/c/1.5", "/admin/c/%EF%BC%91", "/admin/c/99999999",
    "/admin/c/99999999999999999999", "/admin/c/9223372036854775808", "/admin/c/abc/messages",
    "/admin/c/{cid}/messages?before=abc", "/admin/c/{cid}/messages?before=0", "/admin/c/abc/row",
    "/admin/list?cursor=abc", "/admin/list?cursor=1_0", "/admin/list?cursor=-1_5",
    "/admin/list?cursor=99999999999999999999_1",
]


def test_nonsense_ids_are_404(app_client: TestClient, db: Session, admin_token: str) -> None:
    cid = converse(db, "b1", "m1")
    for path in NONSENSE:
        response = app_client.get(path.replace("{cid}", str(cid)), follow_redirects=False)
        assert response.status_code == 404, (path, response.status_code)
        assert "Traceback" not in response.text
    assert app_client.get(f"/admin/c/{cid}").status_code == 200


def test_someone_who_is_not_an_admin_is_sent_to_login(app_client: TestClient, db: Session) -> None:
    cid = converse(db, "b1", "m1")
    assert login_location(app_client.get("/admin", follow_redirects=False)) == "/admin"
    assert login_location(app_client.get("/admin?role=buyer", follow_redirects=False)) == "/admin?role=buyer"
    assert login_location(app_client.get(f"/admin/c/{cid}", follow_redirects=False)) == f"/admin/c/{cid}"
    assert login_location(app_client.get("/admin/stats", follow_redirects=False)) == "/admin/stats"
    assert app_client.get("/admin/list", headers={"HX-Request": "true"}).status_code == 401

    sign_in(app_client, "b1", target="m1")  # a buyer is not an admin
    page = app_client.get("/admin", follow_redirects=False)
    assert login_location(page) == "/admin"
    assert 'data-testid="monitor"' not in page.text
