"""A marketplace's backend retries a message or an order notice it is not sure was sent: with the same
Idempotency-Key it is stored once, however often and however concurrently the request comes, on SQLite and MariaDB.

What it relies on: a retry is answered 200 with the original message, nothing stored again; each API key has its
own keys; the same key with a different request (another body, sender, kind or conversation) is refused with 422
and stores nothing (the IETF Idempotency-Key draft), never answered with the earlier message.
"""

from __future__ import annotations

import threading

import httpx

from tests.api_support import Api, assert_error, new_key


def test_the_same_idempotency_key_stores_one_message(api: Api) -> None:
    cid = api.conversation("b1", "m1")
    path = f"/api/v1/conversations/{cid}/messages"
    notice = {"body": "订单已发货", "kind": "system"}
    first = api.post(path, notice, {"Idempotency-Key": "order-1001-shipped"})
    retry = api.post(path, notice, {"Idempotency-Key": "order-1001-shipped"})
    assert first.status_code == 201, first.text
    assert retry.status_code == 200, retry.text
    assert retry.json() == first.json()
    assert [m["id"] for m in api.messages(cid)] == [first.json()["id"]]

    other = api.post(path, notice, {"Idempotency-Key": "order-1002-shipped"})
    plain = api.post(path, {"body": "在吗", "sender_id": "b1"})
    assert other.status_code == 201 and plain.status_code == 201
    assert other.json()["id"] != first.json()["id"]
    assert len(api.messages(cid)) == 3

    # another integration's key has its own Idempotency-Keys: it never gets this shop's message back
    second_shop = {"Authorization": f"Bearer {new_key(api.database_url, 'second-shop')}"}
    theirs = api.client.post(path, json=notice, headers=second_shop | {"Idempotency-Key": "order-1001-shipped"})
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    assert len(api.messages(cid)) == 4


def test_an_idempotency_key_reused_for_another_request_is_refused_and_stores_nothing(api: Api) -> None:
    """The IETF Idempotency-Key draft: the same key with a different payload is a client error (422), never the
    earlier message in place of the new one."""
    cid = api.conversation("b1", "m1")
    other_cid = api.conversation("b2", "m1")
    path = f"/api/v1/conversations/{cid}/messages"
    key = {"Idempotency-Key": "order-2001"}
    first = api.post(path, {"body": "订单已发货", "kind": "system"}, key)
    assert first.status_code == 201, first.text
    for variant_path, body in (
        (path, {"body": "订单已签收", "kind": "system"}),  # another body
        (path, {"body": "订单已发货", "sender_id": "m1"}),  # another sender and kind
        (f"/api/v1/conversations/{other_cid}/messages", {"body": "订单已发货", "kind": "system"}),  # elsewhere
    ):
        assert_error(api.post(variant_path, body, key), 422, "idempotency_key_reused", "Idempotency-Key")
    assert [m["id"] for m in api.messages(cid)] == [first.json()["id"]]
    assert api.messages(other_cid) == []
    # the same request again is still answered with the original
    retry = api.post(path, {"body": "  订单已发货\n", "kind": "system"}, key)  # the same body once trimmed
    assert retry.status_code == 200 and retry.json() == first.json()


def test_messages_racing_into_one_conversation_are_each_stored_once(api: Api) -> None:
    """Six retries of one notice with the same Idempotency-Key and eight other messages, all at the same moment."""
    cid = api.conversation("b1", "m1")
    results: dict[int, httpx.Response] = {}
    barrier = threading.Barrier(14)

    def post(i: int) -> None:
        retry = i < 6
        body = {"body": "订单已付款", "kind": "system"} if retry else {"body": f"第{i}条", "sender_id": "b1"}
        barrier.wait()
        results[i] = api.post(f"/api/v1/conversations/{cid}/messages", body,
                              {"Idempotency-Key": "pay-77"} if retry else None)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(14)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 14
    statuses = {i: (r.status_code, r.text[:200]) for i, r in results.items()}
    retries = [results[i] for i in range(6)]
    assert sorted(r.status_code for r in retries) == [200] * 5 + [201], statuses
    assert len({r.json()["id"] for r in retries}) == 1
    assert all(results[i].status_code == 201 for i in range(6, 14)), statuses
    stored = api.messages(cid)
    assert len(stored) == 9
    assert sorted(m["body"] for m in stored) == sorted(["订单已付款"] + [f"第{i}条" for i in range(6, 14)])
    assert api.get(f"/api/v1/conversations/{cid}").json()["message_count"] == 9
