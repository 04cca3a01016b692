"""Walking the conversation lists of the API while they move, on SQLite and MariaDB, as a marketplace's backend does.

What a marketplace relies on: following `next_cursor` to the end returns every conversation at least once, even
when conversations get messages (and move to the top) while it pages; a sync with `updated_since` returns, oldest
activity first, every conversation that changed since then, what changed during the walk again at the end, and
`next_updated_since` for the next sync, early enough that a transaction committing late is not missed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import update

from app.chat import conversations as convs
from app.chat.people import get_user, upsert_user
from app.db.models import Conversation, Member, utcnow
from app.main import create_app
from tests.conftest import make_settings
from tests.test_api import BASE_URL, Api, assert_error, new_key, with_session

BASE = datetime(2021, 5, 1, 8, 0, tzinfo=UTC)  # long before anything made now


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[Api]:
    key = new_key(database_url)
    app = create_app(make_settings(database_url, tmp_path))
    with TestClient(app, base_url=BASE_URL) as client:
        yield Api(client, key, database_url)


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


def walk(api: Api, during: dict[int, Any] | None = None, **params: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Follow next_cursor to the end with 10 a page; `during[n]()` runs after page n. Every item in order, and the
    last page."""
    items: list[dict[str, Any]] = []
    cursor, pages = None, 0
    while True:
        response = api.get("/api/v1/conversations", limit=10, **params, **({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        items += body["items"]
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
