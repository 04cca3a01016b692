"""A marketplace asks the API for a sign-in link (POST /api/v1/links) and sends its customer there, on SQLite and
MariaDB, through the real app.

What it relies on: the link signs the person in and opens the conversation with the target, the token leaves the
address bar and the session stays; it expires when asked (ttl); a link changed by a single character signs no one
in; unknown people and bad fields are JSON errors.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from litestar.testing import TestClient

from tests.api_support import BASE_URL, Api, assert_error
from tests.support import OPEN_CONVERSATION_RE


def test_a_link_signs_the_person_in_and_opens_the_target(api: Api) -> None:
    assert api.put("/api/v1/users/shop-b9", {"name": "第九药房", "role": "buyer"}).status_code == 201
    before = datetime.now(UTC)
    response = api.post("/api/v1/links", {"user_id": "shop-b9", "target": "m1", "ttl": 120})
    assert response.status_code == 201, response.text
    link = response.json()
    assert link["url"].startswith(f"{BASE_URL}/chat?token=")
    assert parse_qs(urlsplit(link["url"]).query)["token"] == [link["token"]]
    expires = datetime.fromisoformat(link["expires_at"].replace("Z", "+00:00"))
    assert before + timedelta(seconds=110) < expires < datetime.now(UTC) + timedelta(seconds=130)

    browser = TestClient(api.client.app, base_url=BASE_URL)  # its own cookie jar, no API key
    page = browser.get(link["url"], follow_redirects=True)
    assert page.status_code == 200, page.text
    assert urlsplit(str(page.url)).path == "/chat"
    assert "token" not in str(page.url)  # dropped from the address bar
    assert 'data-user-id="shop-b9"' in page.text
    opened = OPEN_CONVERSATION_RE.search(page.text)
    assert opened, "the link's target conversation is not open"
    conversation = api.get(f"/api/v1/conversations/{opened.group(1)}").json()
    assert sorted(conversation["participants"]) == ["m1", "shop-b9"]
    assert browser.get("/chat").status_code == 200  # still signed in without the token

    head, _, signature = link["url"].rpartition(".")  # the signature's first character: all its bits count
    forged = f"{head}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    tampered = TestClient(api.client.app, base_url=BASE_URL).get(forged, follow_redirects=True)
    assert tampered.status_code == 403

    assert_error(api.post("/api/v1/links", {"user_id": "nobody"}), 404, "not_found")
    assert_error(api.post("/api/v1/links", {"user_id": "shop-b9", "target": "nobody"}), 404, "not_found")
    assert_error(api.post("/api/v1/links", {"user_id": "shop-b9", "ttl": 0}), 422, "invalid", "ttl")
    assert_error(api.post("/api/v1/links", {"user_id": "shop-b9", "ttl": "soon"}), 400, "invalid_request", "ttl")
    assert_error(api.post("/api/v1/links", {}), 400, "invalid_request", "user_id")
