"""Ops add, list and remove a marketplace's webhooks with `kefu webhook add/list/remove`, on SQLite and MariaDB.

What they rely on: `add` prints the signing secret once (`list` never shows it) and takes the events asked for
(`message.created`, `conversation.created`, or both by default); each webhook gets only its own events, and none
once removed; a bad URL, an unknown event or an unknown webhook is one clear line and a non-zero status; ids of a
removed webhook and of its deliveries are never given out again (receivers drop what they have seen by id)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from app.chat import conversations as convs
from app.chat import messages as msgs
from app.chat.people import get_user
from app.db.models import WebhookDelivery
from tests.cli_support import assert_one_line_error, kefu
from tests.seeding import with_session
from tests.webhook_support import (
    add_webhook,
    store_messages,
)


def test_webhook_add_list_remove_and_which_events_each_gets(database_url: str, tmp_path: Path) -> None:
    messages_only, secret_a = add_webhook(database_url, tmp_path, "http://127.0.0.1:9/a", "--events", "message.created")
    everything, secret_b = add_webhook(database_url, tmp_path, "https://shop.example/kefu/hook")
    assert len(secret_a) >= 32 and secret_a != secret_b

    bad_url = kefu(database_url, tmp_path, "webhook", "add", "ftp://shop.example/hook")
    bad_event = kefu(database_url, tmp_path, "webhook", "add", "https://shop.example/x", "--events", "order.paid")
    for refused in (bad_url, bad_event):
        assert_one_line_error(refused)

    listed = kefu(database_url, tmp_path, "webhook", "list")
    assert listed.code == 0, listed.err
    assert f"{messages_only}\thttp://127.0.0.1:9/a\tmessage.created" in listed.out
    assert f"{everything}\thttps://shop.example/kefu/hook\tmessage.created,conversation.created" in listed.out
    assert secret_a not in listed.out and secret_b not in listed.out  # shown once, when added
    assert "ftp://" not in listed.out and "order.paid" not in listed.out

    def events_stored() -> list[tuple[int, str]]:
        with with_session(database_url) as session:
            conversation = convs.get_or_create_conversation(session, get_user(session, "b1"), get_user(session, "m2"))
            msgs.send_message(session, conversation.id, "b1", "在吗")
            session.commit()
            rows = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
            found = [(row.webhook_id, row.event) for row in rows]
            for row in rows:
                session.delete(row)
            session.commit()
            return found

    assert sorted(events_stored()) == sorted([(everything, "conversation.created"),
                                              (everything, "message.created"), (messages_only, "message.created")])
    removed = kefu(database_url, tmp_path, "webhook", "remove", str(messages_only))
    assert removed.code == 0, removed.err
    assert events_stored() == [(everything, "message.created")]  # the conversation exists already
    again = kefu(database_url, tmp_path, "webhook", "remove", str(messages_only))
    assert_one_line_error(again, str(messages_only))


def test_ids_of_a_removed_webhook_and_its_deliveries_are_never_given_out_again(database_url: str,
                                                                                tmp_path: Path) -> None:
    """Receivers drop deliveries they have seen by id: re-adding a webhook (to rotate its secret, say) must not
    hand the new events the old ids (SQLite reused them once the rows were deleted)."""
    first_hook, _ = add_webhook(database_url, tmp_path, "http://127.0.0.1:9/hook", "--events", "message.created")
    before = store_messages(database_url, 3)
    assert kefu(database_url, tmp_path, "webhook", "remove", str(first_hook)).code == 0
    second_hook, _ = add_webhook(database_url, tmp_path, "http://127.0.0.1:9/hook", "--events", "message.created")
    after = store_messages(database_url, 3)
    assert second_hook > first_hook
    assert min(after) > max(before) and len(after) == 3
