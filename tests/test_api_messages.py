"""A marketplace's backend posts messages and order notices into a conversation over the API, on SQLite and MariaDB.

What it relies on: a message posted as a participant is stored trimmed, as that person's; a notice (kind `system`,
or no sender) is stored as Kefu's own, and both come back in order with the conversation's count and last message;
the buyer sees the notice in their chat, and an open chat gets it over its event stream at once (`kefu serve` in a
child process); a refused message (not a participant, empty, too long, a bad field) stores nothing.
"""

from __future__ import annotations

import httpx
from litestar.testing import TestClient

from tests.api_support import BASE_URL, Api, assert_error, new_key
from tests.streams import OpenBrowser, message_ids
from tests.support import ServerProcess, sign_in


def test_post_a_message_as_a_participant_and_an_order_notice(api: Api) -> None:
    cid = api.conversation("b1", "m1")
    sent = api.post(f"/api/v1/conversations/{cid}/messages", {"body": "  请问板蓝根还有货吗？🙂 ", "sender_id": "b1"})
    assert sent.status_code == 201, sent.text
    message = sent.json()
    assert message["conversation_id"] == cid and message["sender_id"] == "b1"
    assert message["kind"] == "text" and message["body"] == "请问板蓝根还有货吗？🙂"

    notice = api.post(f"/api/v1/conversations/{cid}/messages", {"body": "订单已发货", "kind": "system"})
    assert notice.status_code == 201, notice.text
    assert notice.json()["kind"] == "system" and notice.json()["body"] == "订单已发货"
    assert notice.json()["sender_id"] not in ("b1", "m1")
    no_sender = api.post(f"/api/v1/conversations/{cid}/messages", {"body": "已签收"})
    assert no_sender.status_code == 201 and no_sender.json()["kind"] == "system"

    assert [m["id"] for m in api.messages(cid)] == [message["id"], notice.json()["id"], no_sender.json()["id"]]
    assert api.messages(cid)[1] == notice.json()
    conversation = api.get(f"/api/v1/conversations/{cid}").json()
    assert conversation["message_count"] == 3 and conversation["last_message_id"] == no_sender.json()["id"]

    browser = TestClient(api.client.app, base_url=BASE_URL)  # the buyer sees the notice in their chat
    sign_in(browser, "b1", target="m1")
    page = browser.get(f"/chat/c/{cid}")
    assert page.status_code == 200 and "订单已发货" in page.text
    assert f'data-message-id="{notice.json()["id"]}"' in page.text

    path = f"/api/v1/conversations/{cid}/messages"
    assert_error(api.post(path, {"body": "hi", "sender_id": "b2"}), 403, "forbidden")  # not a participant
    assert_error(api.post(path, {"body": "hi", "sender_id": "nobody"}), 403, "forbidden")
    assert_error(api.post(path, {"body": "   ", "sender_id": "b1"}), 422, "invalid", "body")
    assert_error(api.post(path, {"body": "长" * 5001, "sender_id": "b1"}), 422, "invalid", "body")
    assert_error(api.post(path, {"body": "", "kind": "system"}), 422, "invalid", "body")
    assert_error(api.post(path, {"sender_id": "b1"}), 400, "invalid_request", "body")
    assert_error(api.post(path, {"body": "hi", "kind": "shout"}), 400, "invalid_request", "kind")
    assert len(api.messages(cid)) == 3  # none of the refused ones was stored


def test_a_notice_over_the_api_reaches_the_open_chat_at_once(database_url: str, kefu_server: ServerProcess,
                                                              open_browser: OpenBrowser) -> None:
    auth = {"Authorization": f"Bearer {new_key(database_url)}"}
    buyer = open_browser(kefu_server, "b1", target="m1")
    with httpx.Client(base_url=kefu_server.url, timeout=10, headers=auth) as backend:
        cid = backend.post("/api/v1/conversations", json={"user_ids": ["b1", "m1"]}).json()["id"]
        with buyer.events() as stream:
            stream.opened()  # subscribed: whatever is published from here on reaches it
            posted = backend.post(f"/api/v1/conversations/{cid}/messages",
                                  json={"body": "订单已发货", "kind": "system"})
            assert posted.status_code == 201, posted.text
            mid = posted.json()["id"]
            # within 5 s: the notice did not reach the buyer's stream otherwise
            event = stream.wait_for("message", seconds=5, where=lambda e: message_ids([e]) == [mid])
    assert f'data-conversation-id="{cid}"' in event.data and "订单已发货" in event.data
