"""A marketplace puts its buyers, merchants and support people into Kefu over the API (PUT /api/v1/users/{id}), on
SQLite and MariaDB, through the real app.

What it relies on: PUT creates a person (201) and then updates them (200), names with emoji and Chinese included,
and a person made this way can talk at once; a bad field is JSON with a stable code naming the field, and creates
nothing; an admin's id is never taken over or shown.
"""

from __future__ import annotations

from app.chat.admins import create_admin
from app.chat.people import get_user
from tests.api_support import Api, assert_error
from tests.seeding import with_session


def test_put_creates_and_then_updates_buyers_merchants_and_support_people(api: Api) -> None:
    for role in ("buyer", "merchant", "support"):
        uid = f"shop-{role}-1"
        person = {"name": f"🧧新{role}药房", "role": role, "avatar_url": f"https://shop.example/a/{role}.png",
                  "description": "连锁药房，采购常用药品"}
        created = api.put(f"/api/v1/users/{uid}", person)
        assert created.status_code == 201, created.text
        assert created.json() == {"id": uid, **person}
        assert api.get(f"/api/v1/users/{uid}").json() == {"id": uid, **person}

        changed = {**person, "name": f"{role}（已改名）", "avatar_url": "https://shop.example/new.png"}
        updated = api.put(f"/api/v1/users/{uid}", changed)
        assert updated.status_code == 200, updated.text
        assert api.get(f"/api/v1/users/{uid}").json() == {"id": uid, **changed}
    # the demo people are there too, with the names of the contract
    assert api.get("/api/v1/users/m1").json()["name"] == "保和堂医药集团"
    # a person made over the API can talk at once
    assert api.post("/api/v1/conversations", {"user_ids": ["shop-buyer-1", "shop-merchant-1"]}).status_code == 201


def test_people_errors_are_json_with_a_stable_code_and_name_the_field(api: Api) -> None:
    good = {"name": "新药房", "role": "buyer"}
    assert_error(api.put("/api/v1/users/x1", {**good, "role": "boss"}), 400, "invalid_request", "role")
    assert_error(api.put("/api/v1/users/x1", {**good, "role": "admin"}), 400, "invalid_request", "role")
    assert_error(api.put("/api/v1/users/x1", {"role": "buyer"}), 400, "invalid_request", "name")
    assert_error(api.put("/api/v1/users/x1", {**good, "name": 5}), 400, "invalid_request", "name")
    assert_error(api.put("/api/v1/users/x1", {**good, "name": "   "}), 422, "invalid", "name")
    assert_error(api.put("/api/v1/users/x1", {**good, "name": "长" * 101}), 422, "invalid", "name")
    assert_error(api.put("/api/v1/users/bad%20id", good), 400, "invalid_request", "user_id")
    assert_error(api.put("/api/v1/users/" + "x" * 65, good), 400, "invalid_request", "user_id")
    malformed = api.client.put("/api/v1/users/x1", content=b"{not json", headers=api.auth)
    assert_error(malformed, 400, "bad_request")
    assert_error(api.get("/api/v1/users/x1"), 404, "not_found")  # none of the above created them

    with with_session(api.database_url) as session:
        create_admin(session, "boss1", "boss", "correct horse battery staple")
        session.commit()
    assert_error(api.put("/api/v1/users/boss1", good), 403, "forbidden")  # an admin is never taken over
    assert_error(api.get("/api/v1/users/boss1"), 404, "not_found")
    with with_session(api.database_url) as session:
        admin = get_user(session, "boss1")
        assert admin is not None and admin.role == "admin"
