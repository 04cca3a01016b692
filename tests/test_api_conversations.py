"""A marketplace opens the conversation between two people over the API (POST /api/v1/conversations), on SQLite and
MariaDB, through the real app.

What it relies on: a pair has one conversation, found again whichever way round it is asked for; pairs that may not
talk, unknown people and bad fields are JSON errors; a conversation id that does not exist (or is no number) is 404
on every route of a conversation.
"""

from __future__ import annotations

from tests.api_support import Api, assert_error


def test_opening_a_conversation_finds_the_pairs_one_conversation(api: Api) -> None:
    created = api.post("/api/v1/conversations", {"user_ids": ["b1", "m1"]})
    assert created.status_code == 201, created.text
    conversation = created.json()
    assert sorted(conversation["participants"]) == ["b1", "m1"]
    assert conversation["message_count"] == 0 and conversation["last_message_id"] is None
    found = api.post("/api/v1/conversations", {"user_ids": ["m1", "b1"]})
    assert found.status_code == 200
    assert found.json()["id"] == conversation["id"]
    assert api.get(f"/api/v1/conversations/{conversation['id']}").json() == conversation

    assert_error(api.post("/api/v1/conversations", {"user_ids": ["b1", "b2"]}), 403, "forbidden")
    assert_error(api.post("/api/v1/conversations", {"user_ids": ["b1", "b1"]}), 403, "forbidden")
    assert_error(api.post("/api/v1/conversations", {"user_ids": ["b1"]}), 422, "invalid", "user_ids")
    assert_error(api.post("/api/v1/conversations", {"user_ids": "b1"}), 400, "invalid_request", "user_ids")
    assert_error(api.post("/api/v1/conversations", {"user_ids": ["b1", "nobody"]}), 404, "not_found")
    for cid in ("999999", "0", "abc", "-1", "99999999999999999999"):
        assert_error(api.get(f"/api/v1/conversations/{cid}"), 404, "not_found")
        assert_error(api.get(f"/api/v1/conversations/{cid}/messages"), 404, "not_found")
        assert_error(api.post(f"/api/v1/conversations/{cid}/messages", {"body": "hi"}), 404, "not_found")
