"""Paging through the API's lists, on SQLite and MariaDB, as a marketplace's backend does: still and while they move.

What a marketplace relies on: conversations page newest activity first and messages oldest first, through keyset
cursors (`next_cursor`, `after` and `next_after`), every item exactly once, conversations that share a moment told
apart by id, and polling with `after` brings what is new and only that; following `next_cursor` to the end returns
every conversation at least once, even when conversations get messages (and move to the top) while it pages; a sync
with `updated_since` returns, oldest activity first, every conversation that changed since then, what changed during
the walk again at the end, and `next_updated_since` for the next sync, early enough that a transaction committing
late is not missed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from app.chat import conversations as convs
from app.chat import messages as msgs
from app.chat.people import get_user, upsert_user
from app.db.models import Conversation, Member, utcnow
from tests.api_support import Api, assert_error
from tests.seeding import with_session

BASE = datetime(2021, 5, 1, 8, 0, tzinfo=UTC)  # long before anything made now


def set_activity(database_url: str, times: dict[int, datetime]) -> None:
    """Give conversations a last activity in the past, in the list of both participants, and commit."""
    with with_session(database_url) as session:
        for cid, moment in times.items():
            session.execute(update(Conversation).where(Conversation.id == cid).values(last_activity_at=moment))
            session.execute(update(Member).where(Member.conversation_id == cid).values(last_activity_at=moment))
        session.commit()


def merchant_with_buyers(database_url: str, count: int) -> list[int]:
    """m1 and `count` new buyers, one conversation each; three share each moment (the id tells them apart). The
    ids, newest activity first."""
    with with_session(database_url) as session:
        m1 = get_user(session, "m1")
        ids = [convs.get_or_create_conversation(session, upsert_user(session, f"lb{n}", f"买家{n}", "buyer"), m1).id
               for n in range(count)]
        session.commit()
    set_activity(database_url, {cid: BASE + timedelta(seconds=n // 3) for n, cid in enumerate(ids)})
    return list(reversed(ids))


def say(api: Api, cid: int, body: str) -> None:
    response = api.post(f"/api/v1/conversations/{cid}/messages", {"body": body, "sender_id": "m1"})
    assert response.status_code == 201, response.text


def walk(api: Api, during: dict[int, Any] | None = None, sizes: list[int] | None = None,
         **params: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Follow next_cursor to the end with 10 a page; `during[n]()` runs after page n; each page's length is added to
    `sizes`. Every item in order, and the last page."""
    items: list[dict[str, Any]] = []
    cursor, pages = None, 0
    while True:
        response = api.get("/api/v1/conversations", limit=10, **params, **({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        items += body["items"]
        if sizes is not None:
            sizes.append(len(body["items"]))
        if during and pages in during:
            during[pages]()
        cursor = body["next_cursor"]
        if cursor is None:
            return items, body
        assert body.get("next_updated_since") is None, body  # only once the walk is over
        assert pages < 30, "the cursor never ends"


def latest(items: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """As the guide tells a client to deduplicate: by id, the copy with the latest last_activity_at."""
    kept: dict[int, dict[str, Any]] = {}
    for item in items:
        if item["id"] not in kept or item["last_activity_at"] >= kept[item["id"]]["last_activity_at"]:
            kept[item["id"]] = item
    return kept


def test_75_conversations_page_by_10_each_exactly_once_newest_first(api: Api) -> None:
    base = datetime(2021, 5, 1, 8, 0, tzinfo=UTC)  # before any conversation made now
    with with_session(api.database_url) as session:
        buyer = get_user(session, "b1")
        for i in range(75):
            merchant = upsert_user(session, f"lm{i}", f"商家{i}", "merchant")
            conversation = convs.get_or_create_conversation(session, buyer, merchant)
            # three conversations share each moment: the cursor must tell them apart by id
            activity = base + timedelta(seconds=i // 3)
            session.execute(update(Conversation).where(Conversation.id == conversation.id)
                            .values(last_activity_at=activity))
            session.execute(update(Member).where(Member.conversation_id == conversation.id)
                            .values(last_activity_at=activity))
        session.commit()
        rows = session.execute(select(Conversation.id, Conversation.last_activity_at)).all()
    expected = [cid for cid, _at in sorted(rows, key=lambda row: (row[1], row[0]), reverse=True)]
    assert len(expected) == 75

    started: list[int] = []

    def start_one() -> None:  # a conversation that starts while the marketplace pages: at the end, once
        with with_session(api.database_url) as session:
            started.append(convs.get_or_create_conversation(session, get_user(session, "b1"),
                                                             get_user(session, "p1")).id)
            session.commit()

    sizes: list[int] = []
    items, _last = walk(api, during={1: start_one}, sizes=sizes, user_id="b1")
    assert sizes == [10] * 7 + [5, 1]
    assert [item["id"] for item in items] == expected + started
    # every conversation (there are now 76, the newest first), without user_id
    everything = [item["id"] for item in api.get("/api/v1/conversations", limit=100).json()["items"]]
    assert len(everything) == 76 and everything[1:] == expected
    assert api.get("/api/v1/conversations", user_id="b1").json()["next_cursor"] is not None  # default page: 30

    assert_error(api.get("/api/v1/conversations", cursor="not-a-cursor"), 422, "invalid", "cursor")
    assert_error(api.get("/api/v1/conversations", limit=0), 400, "invalid_request", "limit")
    assert_error(api.get("/api/v1/conversations", limit=101), 400, "invalid_request", "limit")


def test_250_messages_page_with_after_and_limit_oldest_first(api: Api) -> None:
    cid = api.conversation("b1", "m1")
    with with_session(api.database_url) as session:
        stored = [msgs.send_message(session, cid, ("b1", "m1")[i % 2], f"第{i}条").id for i in range(250)]
    assert stored == sorted(stored)

    def page_through(limit: int) -> tuple[list[dict[str, Any]], int]:
        items: list[dict[str, Any]] = []
        after, pages = 0, 0
        while True:
            response = api.get(f"/api/v1/conversations/{cid}/messages", after=after, limit=limit)
            assert response.status_code == 200, response.text
            body = response.json()
            pages += 1
            items += body["items"]
            if body["next_after"] is None:
                return items, pages
            assert body["next_after"] == body["items"][-1]["id"]
            after = body["next_after"]
            assert pages < 100, "next_after never ends"

    for limit, expected_pages in ((100, 3), (7, 36)):
        items, pages = page_through(limit)
        assert pages == expected_pages
        assert [m["id"] for m in items] == stored
        assert [m["body"] for m in items] == [f"第{i}条" for i in range(250)]

    first = api.get(f"/api/v1/conversations/{cid}/messages").json()  # default: 50, oldest first
    assert [m["id"] for m in first["items"]] == stored[:50] and first["next_after"] == stored[49]
    tail = api.get(f"/api/v1/conversations/{cid}/messages", after=stored[199]).json()
    assert [m["id"] for m in tail["items"]] == stored[200:] and tail["next_after"] is None
    # polling with `after` = the last id seen brings what is new, and only that
    assert api.get(f"/api/v1/conversations/{cid}/messages", after=stored[-1]).json() == {"items": [],
                                                                                        "next_after": None}
    new = api.post(f"/api/v1/conversations/{cid}/messages", {"body": "新消息", "sender_id": "m1"}).json()
    assert api.get(f"/api/v1/conversations/{cid}/messages", after=stored[-1]).json()["items"] == [new]

    path = f"/api/v1/conversations/{cid}/messages"
    assert_error(api.get(path, limit=0), 400, "invalid_request", "limit")
    assert_error(api.get(path, limit=101), 400, "invalid_request", "limit")
    assert_error(api.get(path, after=-1), 400, "invalid_request", "after")
    assert_error(api.get(path, after="abc"), 400, "invalid_request", "after")


@pytest.mark.parametrize("whose", ["m1", "everyone"])
def test_a_conversation_that_gets_a_message_while_the_marketplace_pages_is_not_missed(api: Api, whose: str) -> None:
    newest_first = merchant_with_buyers(api.database_url, 30)
    on_page_3 = newest_first[24]
    params = {"user_id": "m1"} if whose == "m1" else {}

    items, last_page = walk(api, {1: lambda: say(api, on_page_3, "还有货吗？")}, **params)

    ids = [item["id"] for item in items]
    assert ids[:29] == [cid for cid in newest_first if cid != on_page_3]  # newest first; it moved up meanwhile
    assert ids[29:] == [on_page_3]  # so it comes at the end
    seen = latest(items)
    assert set(seen) == set(newest_first)
    assert seen[on_page_3]["message_count"] == 1 and seen[on_page_3]["last_message_id"] is not None
    assert last_page["next_updated_since"].endswith("Z")


@pytest.mark.parametrize("whose", ["m1", "everyone"])
def test_a_sync_with_updated_since_sees_what_changed_during_the_walk_again_at_the_end(api: Api, whose: str) -> None:
    newest_first = merchant_with_buyers(api.database_url, 25)
    oldest_first = list(reversed(newest_first))
    already_returned, not_reached = oldest_first[3], oldest_first[20]
    params = {"user_id": "m1"} if whose == "m1" else {}

    def messages() -> None:
        say(api, already_returned, "已发货")
        say(api, not_reached, "已付款")

    since = (BASE + timedelta(seconds=1)).isoformat().replace("+00:00", "Z")  # the first three are older
    items, last_page = walk(api, {1: messages}, updated_since=since, **params)

    ids = [item["id"] for item in items]
    unchanged = [cid for cid in oldest_first[4:] if cid != not_reached]
    assert ids == [already_returned, *unchanged, already_returned, not_reached]
    assert items[0]["message_count"] == 0 and items[-2]["message_count"] == 1  # the change, seen at the end
    activity = [(item["last_activity_at"], item["id"]) for item in items[:-2]]
    assert activity == sorted(activity)

    # the next sync: the changes of the last minute again (the overlap), nothing older
    again, _ = walk(api, updated_since=last_page["next_updated_since"], **params)
    assert [item["id"] for item in again] == [already_returned, not_reached]


def test_a_message_that_commits_late_with_an_older_time_is_in_the_next_sync(api: Api) -> None:
    newest_first = merchant_with_buyers(api.database_url, 5)
    late, recent = newest_first[-1], newest_first[0]
    say(api, recent, "刚刚")
    since = BASE.isoformat().replace("+00:00", "Z")
    items, last_page = walk(api, updated_since=since, user_id="m1")
    assert items[-1]["id"] == recent

    # A transaction that took its time: it committed only now, 30 s after the moment it stamped on the conversation,
    # which is older than `recent`, already returned.
    stamped = utcnow() - timedelta(seconds=30)
    assert stamped.isoformat() < items[-1]["last_activity_at"]
    set_activity(api.database_url, {late: stamped})

    again, _ = walk(api, updated_since=last_page["next_updated_since"], user_id="m1")
    assert [item["id"] for item in again] == [late, recent]


def test_paging_errors_name_the_field_and_never_give_500(api: Api) -> None:
    merchant_with_buyers(api.database_url, 3)
    assert_error(api.get("/api/v1/conversations", updated_since="yesterday"), 400, "invalid_request", "updated_since")
    for cursor in ("not-a-cursor", "a1_2", "x1_2_3", f"a{'9' * 19}_1_1", f"d1_{'9' * 19}_1", "a-1_2_3"):
        assert_error(api.get("/api/v1/conversations", cursor=cursor), 422, "invalid", "cursor")
    # the older form of a newest-first cursor still works: a walk under way when Kefu was updated goes on
    in_2030 = int(datetime(2030, 1, 1, tzinfo=UTC).timestamp()) * 10**6
    older = api.get("/api/v1/conversations", user_id="m1", limit=1, cursor=f"{in_2030}_{2**62}")
    assert older.status_code == 200 and len(older.json()["items"]) == 1, older.text
    far = api.get("/api/v1/conversations", user_id="m1", updated_since="1900-01-01T00:00:00Z")
    assert far.status_code == 200 and len(far.json()["items"]) == 3, far.text
    future = api.get("/api/v1/conversations", updated_since="9999-12-31T23:59:59+08:00")
    assert future.status_code == 200 and future.json()["items"] == [], future.text


def test_the_openapi_document_explains_the_sync(api: Api) -> None:
    document = api.client.get("/api/openapi.json").json()
    operation = document["paths"]["/api/v1/conversations"]["get"]
    assert "every conversation at least once" in operation["description"]
    assert "next_updated_since" in operation["description"]
    [parameter] = [p for p in operation["parameters"] if p["name"] == "updated_since"]
    assert "oldest activity first" in parameter["description"]
