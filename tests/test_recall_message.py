"""A sender takes a message back (撤回) within two minutes: both sides see a tombstone instead of it, live and after a
reconnect; admins still read the original and the audit log says who recalled what (on SQLite and MariaDB).

What people rely on: once recalled, the text, the file and the list's preview are gone for both participants, in
pages, fragments, the stream and the API; only the sender can recall, only within two minutes, and only their own
messages; a tab that was away when it happened shows the tombstone when it comes back.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from litestar.testing import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.chat.webhooks import add_webhook
from app.db.models import AuditEntry, Message, WebhookDelivery, utcnow
from tests.admin_support import make_admin, sign_in_admin, use_fast_hashing
from tests.api_support import Api
from tests.file_samples import pdf_bytes, upload
from tests.streams import OpenBrowser, json_data, root_attributes
from tests.support import ServerProcess, other_browser, sign_in_to

SECRET = "订单号 DD20251128001 的收货地址写错了"


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fast_hashing(monkeypatch)


def recall(client: TestClient, token: str, cid: int, mid: int):  # type: ignore[no-untyped-def]
    return client.post(f"/chat/c/{cid}/messages/{mid}/recall", headers={"X-CSRFToken": token})


def sent(client: TestClient, token: str, cid: int, body: str) -> int:
    response = client.post(f"/chat/c/{cid}/messages", data={"body": body}, headers={"X-CSRFToken": token})
    assert response.status_code == 201, response.text
    return int(root_attributes(response.text)["data-message-id"])


def article(page: str, mid: int) -> str:
    found = re.search(rf'<article[^>]*data-message-id="{mid}".*?</article>', page, re.S)
    assert found is not None, page
    return found.group(0)


def test_the_sender_recalls_and_both_sides_see_a_tombstone_not_the_text(app_client: TestClient, db: Session,
                                                                       api: Api) -> None:
    token, cid = sign_in_to(app_client, "b1", "m1")
    mid = sent(app_client, token, cid, SECRET)
    response = recall(app_client, token, cid, mid)
    assert response.status_code == 200, response.text
    tombstone = root_attributes(response.text)
    assert tombstone["data-recalled"] == "true" and tombstone["data-message-id"] == str(mid)
    assert SECRET not in response.text and "你撤回了一条消息" in response.text
    for client in (app_client, other_browser(app_client)):
        if client is not app_client:
            sign_in_to(client, "m1", "b1")
        page = client.get(f"/chat/c/{cid}").text
        shown = article(page, mid)
        assert 'data-recalled="true"' in shown and SECRET not in page
        assert "[已撤回]" in client.get("/chat/list").text  # the list's preview too
    stored = api.messages(cid)[-1]
    assert stored["id"] == mid and stored["body"] is None and stored["recalled_at"]
    entry = db.scalars(select(AuditEntry).where(AuditEntry.action == "message.recalled")).one()
    assert entry.actor == "b1" and f"message={mid}" in entry.detail
    # recalling it again changes nothing and still answers with the tombstone
    again = recall(app_client, token, cid, mid)
    assert again.status_code == 200 and 'data-recalled="true"' in again.text


def test_the_marketplace_hears_of_the_recall_by_webhook(app_client: TestClient, db: Session) -> None:
    hook = add_webhook(db, "http://127.0.0.1:9/kefu-events", ["message.recalled"], private_allowed=True)
    db.commit()
    token, cid = sign_in_to(app_client, "b1", "m1")
    mid = sent(app_client, token, cid, SECRET)
    assert recall(app_client, token, cid, mid).status_code == 200
    db.rollback()
    delivery = db.scalars(select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id)).one()
    payload = json.loads(delivery.payload)
    assert payload["type"] == "message.recalled" and delivery.event == "message.recalled"
    assert payload["data"]["id"] == mid and payload["data"]["sender_id"] == "b1" and payload["data"]["recalled_at"]
    assert SECRET not in delivery.payload


def test_admins_still_read_the_original_marked_recalled(app_client: TestClient, db: Session) -> None:
    token, cid = sign_in_to(app_client, "b1", "m1")
    mid = sent(app_client, token, cid, SECRET)
    assert recall(app_client, token, cid, mid).status_code == 200
    admin = other_browser(app_client)
    make_admin(db)
    sign_in_admin(admin)
    page = admin.get(f"/admin/c/{cid}").text
    shown = article(page, mid)
    assert 'data-recalled="true"' in shown and 'data-testid="recalled-original"' in shown and SECRET in shown


def test_only_the_sender_may_recall_and_only_within_two_minutes(app_client: TestClient, db: Session) -> None:
    token, cid = sign_in_to(app_client, "b1", "m1")
    mine = sent(app_client, token, cid, "第一条")
    peer = other_browser(app_client)
    peer_token, _ = sign_in_to(peer, "m1", "b1")
    theirs = sent(peer, peer_token, cid, "商家的话")
    assert recall(app_client, token, cid, theirs).status_code == 403  # someone else's message
    assert recall(peer, peer_token, cid, mine).status_code == 403
    stranger = other_browser(app_client)
    stranger_token, other_cid = sign_in_to(stranger, "b2", "m1")
    assert recall(stranger, stranger_token, cid, mine).status_code == 403  # not a participant
    assert recall(app_client, token, other_cid, mine).status_code == 403  # not b1's conversation
    assert recall(app_client, token, cid, 987654).status_code == 404  # no such message
    assert recall(app_client, token, cid, "abc").status_code == 404  # type: ignore[arg-type]
    assert app_client.post(f"/chat/c/{cid}/messages/{mine}/recall").status_code == 403  # no CSRF token

    db.execute(update(Message).where(Message.id == mine).values(created_at=utcnow() - timedelta(seconds=121)))
    db.commit()
    late = recall(app_client, token, cid, mine)
    assert late.status_code == 409 and "2 分钟" in late.text
    assert "第一条" in app_client.get(f"/chat/c/{cid}").text  # still there
    assert db.scalar(select(Message.recalled_at).where(Message.id == mine)) is None


def test_admins_cannot_recall(app_client: TestClient, db: Session) -> None:
    token, cid = sign_in_to(app_client, "b1", "m1")
    mid = sent(app_client, token, cid, "你好")
    admin = other_browser(app_client)
    make_admin(db)
    admin_token = sign_in_admin(admin)
    assert recall(admin, admin_token, cid, mid).status_code == 403


def test_a_recalled_file_is_no_longer_downloadable_by_participants(app_client: TestClient, db: Session) -> None:
    token, cid = sign_in_to(app_client, "b1", "m1")
    response = upload(app_client, cid, token, "处方.pdf", pdf_bytes())
    mid = int(root_attributes(response.text)["data-message-id"])
    assert app_client.get(f"/files/{mid}").status_code == 200
    recalled = recall(app_client, token, cid, mid)
    assert recalled.status_code == 200 and "处方.pdf" not in recalled.text
    assert app_client.get(f"/files/{mid}").status_code == 404
    assert app_client.get(f"/files/{mid}/thumb").status_code == 404
    admin = other_browser(app_client)
    make_admin(db)
    sign_in_admin(admin)
    assert admin.get(f"/files/{mid}").status_code == 200


def test_the_other_side_hears_the_recall_live_and_a_tab_that_was_away_on_return(
        kefu_server: ServerProcess, open_browser: OpenBrowser) -> None:
    b1, m1 = open_browser(kefu_server, "b1", target="m1"), open_browser(kefu_server, "m1")
    cid = b1.conversation_with("m1")
    with m1.events() as stream:
        stream.opened()
        mid = b1.post(cid, SECRET)
        stream.wait_for("message")
        answer = b1.client.post(f"/chat/c/{cid}/messages/{mid}/recall", headers={"X-CSRFToken": b1.token})
        assert answer.status_code == 200
        event = stream.wait_for("recall")
    data = json_data(event)
    assert (data["conversation_id"], data["message_id"]) == (cid, mid)
    assert 'data-recalled="true"' in data["html"] and SECRET not in data["html"]

    # away: a message, then its recall, while this tab's stream is closed; it comes back from the last id it saw
    later = b1.post(cid, "再发一条")
    assert b1.client.post(f"/chat/c/{cid}/messages/{later}/recall",
                          headers={"X-CSRFToken": b1.token}).status_code == 200
    with m1.events(last_event_id=str(mid)) as stream:
        replayed = stream.wait_for("recall", where=lambda e: json_data(e)["message_id"] == later)
        assert "再发一条" not in json_data(replayed)["html"]
