"""Replying to a message quotes it (引用): the new message shows who wrote the original and a line of it, and says
so when the original was recalled (on SQLite and MariaDB).

What people rely on: a quote names the right message of the same conversation, never one from elsewhere; a bad
`reply_to` is refused in the composer and nothing is sent.
"""

from __future__ import annotations

import re

from litestar.testing import TestClient

from tests.api_support import Api
from tests.streams import root_attributes
from tests.support import other_browser, sign_in_to


def post(client: TestClient, token: str, cid: int, body: str, reply_to: str | int | None = None):  # type: ignore[no-untyped-def]
    data = {"body": body} | ({"reply_to": str(reply_to)} if reply_to is not None else {})
    return client.post(f"/chat/c/{cid}/messages", data=data, headers={"X-CSRFToken": token})


def quote_of(html: str) -> str:
    found = re.search(r'<a class="msg-quote".*?</a>', html, re.S)
    assert found is not None, html
    return found.group(0)


def test_a_reply_quotes_the_original_with_its_sender_and_a_line_of_it(app_client: TestClient, api: Api) -> None:
    token, cid = sign_in_to(app_client, "b1", "m1")
    merchant = other_browser(app_client)
    merchant_token, _ = sign_in_to(merchant, "m1", "b1")
    original = post(merchant, merchant_token, cid, "板蓝根颗粒 现货充足\n今天下单明天发货")
    original_id = int(root_attributes(original.text)["data-message-id"])
    reply = post(app_client, token, cid, "那我要两盒", reply_to=original_id)
    assert reply.status_code == 201, reply.text
    quote = quote_of(reply.text)
    assert 'data-testid="quote"' in quote and f'data-quote-id="{original_id}"' in quote
    assert "保和堂医药集团" in quote and "板蓝根颗粒 现货充足 今天下单明天发货" in quote
    reply_id = int(root_attributes(reply.text)["data-message-id"])
    page = merchant.get(f"/chat/c/{cid}").text  # the other side, from the database
    shown = quote_of(page.split(f'data-message-id="{reply_id}"')[1])
    assert f'data-quote-id="{original_id}"' in shown and "保和堂医药集团" in shown
    assert api.messages(cid)[-1]["reply_to_id"] == original_id


def test_a_quote_of_a_recalled_message_says_it_was_recalled(app_client: TestClient) -> None:
    token, cid = sign_in_to(app_client, "b1", "m1")
    original = post(app_client, token, cid, "发错了的地址：某某路 1 号")
    original_id = int(root_attributes(original.text)["data-message-id"])
    reply = post(app_client, token, cid, "上面那条作废", reply_to=original_id)
    assert reply.status_code == 201
    assert app_client.post(f"/chat/c/{cid}/messages/{original_id}/recall",
                           headers={"X-CSRFToken": token}).status_code == 200
    page = app_client.get(f"/chat/c/{cid}").text
    quote = quote_of(page)
    assert 'data-quote-recalled="true"' in quote and "该消息已撤回" in quote and "某某路" not in page
    refused = post(app_client, token, cid, "再引用一次", reply_to=original_id)  # nothing left to quote
    assert refused.status_code == 422 and 'data-testid="composer-error"' in refused.text


def test_a_reply_to_a_message_elsewhere_or_no_message_is_refused(app_client: TestClient) -> None:
    token, cid = sign_in_to(app_client, "b1", "m1")
    other = other_browser(app_client)
    other_token, other_cid = sign_in_to(other, "b2", "m1")
    elsewhere = int(root_attributes(post(other, other_token, other_cid, "别人的会话").text)["data-message-id"])
    before = app_client.get(f"/chat/c/{cid}").text.count('data-testid="message"')
    for reply_to in (elsewhere, 987654, "abc", "-1", "1e3"):
        refused = post(app_client, token, cid, "引用", reply_to=reply_to)
        assert refused.status_code == 422, (reply_to, refused.text)
        assert "引用的消息不在这个会话里" in refused.text and "别人的会话" not in refused.text
    assert app_client.get(f"/chat/c/{cid}").text.count('data-testid="message"') == before  # nothing sent
