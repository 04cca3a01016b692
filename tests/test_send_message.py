"""Sending messages: the domain on SQLite and MariaDB, then over HTTP through the real app.

What people rely on: a message is stored trimmed, emoji and Chinese whole, and shown exactly as text (markup is
escaped, never run), whatever text is sent (property-based, hostile text included) or refused with a clear message
in the composer, storing nothing; a send needs the page's CSRF token (header or form field)."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.chat import conversations as convs
from app.chat import messages as msgs
from app.chat.errors import Forbidden, InvalidInput
from app.chat.people import get_user
from app.db.models import Message
from app.main import create_app
from tests.conftest import make_settings
from tests.support import open_conversation_id, sign_in


def open_conversation(db: Session, a: str, b: str):  # type: ignore[no-untyped-def]
    conversation = convs.get_or_create_conversation(db, get_user(db, a), get_user(db, b))
    db.commit()
    return conversation


def test_bodies_are_trimmed_and_round_trip_emoji_and_chinese(db: Session) -> None:
    conversation = open_conversation(db, "b1", "m1")
    text = "  您好，请问板蓝根颗粒还有货吗？🙂🧧 <b>加急</b>\r\n第二行  "
    message = msgs.send_message(db, conversation.id, "b1", text)
    db.commit()
    db.expire_all()
    stored = db.get(Message, message.id)
    assert stored.body == "您好，请问板蓝根颗粒还有货吗？🙂🧧 <b>加急</b>\n第二行"
    assert stored.created_at.tzinfo is not None


@pytest.mark.parametrize("body", ["", "   \n\t ", "x" * 5001, "bad\x00byte", "bell\x07"])
def test_unacceptable_bodies_are_refused_and_nothing_is_stored(db: Session, body: str) -> None:
    conversation = open_conversation(db, "b1", "m1")
    with pytest.raises(InvalidInput):
        msgs.send_message(db, conversation.id, "b1", body)
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Message)) == 0


INVISIBLE = ["\u200b", "\ufeff", "\u2800", "\u3164", "\u2060", "\u200f", "\u200d", "\u202d", "\u115f\u1160",
             "\uffa0", "\u034f", "\ufe0f", "\u3000\u200b\u00a0", "\u0301", "\U000e0020", "\u200b \u2800\n\u3164",
             "\u303f", "\U0001d159", "\ufffc"]


@pytest.mark.parametrize("body", INVISIBLE, ids=[f"U+{ord(b[0]):04X}" for b in INVISIBLE])
def test_bodies_with_nothing_visible_are_refused_with_their_reason(db: Session, body: str) -> None:
    conversation = open_conversation(db, "b1", "m1")
    with pytest.raises(InvalidInput, match="看不见的字符"):
        msgs.send_message(db, conversation.id, "b1", body)
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Message)) == 0


@pytest.mark.parametrize("body", ["\u200b好\u200b", "👍🏽", "👨\u200d👩\u200d👧", "é", "ㅋㅋ", "\u2801", "."])
def test_bodies_with_something_visible_among_invisible_characters_are_kept_whole(db: Session, body: str) -> None:
    conversation = open_conversation(db, "b1", "m1")
    assert msgs.send_message(db, conversation.id, "b1", body).body == body


def test_exactly_5000_characters_is_accepted(db: Session) -> None:
    conversation = open_conversation(db, "b1", "m1")
    message = msgs.send_message(db, conversation.id, "b1", "好" * 5000)
    db.commit()
    assert len(message.body) == 5000


def test_only_participants_may_send(db: Session) -> None:
    conversation = open_conversation(db, "b1", "m1")
    with pytest.raises(Forbidden):
        msgs.send_message(db, conversation.id, "b2", "hi")


def test_pairs_that_may_not_talk(db: Session) -> None:
    b1, b2, m1, m2, p1 = (get_user(db, uid) for uid in ("b1", "b2", "m1", "m2", "p1"))
    for a, b in ((b1, b2), (m1, m2), (b1, b1)):
        with pytest.raises(Forbidden):
            convs.get_or_create_conversation(db, a, b)
    for a, b in ((b1, m1), (b1, p1), (m1, p1)):
        assert convs.get_or_create_conversation(db, a, b).id


def test_a_pair_has_one_conversation_whoever_starts_it(db: Session) -> None:
    first = open_conversation(db, "b1", "m1")
    second = open_conversation(db, "m1", "b1")
    assert first.id == second.id


def test_send_over_http_returns_201_with_the_message_html_escaped(app_client) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(app_client, "b1", target="m1")
    cid = open_conversation_id(app_client, "m1")
    response = app_client.post(f"/chat/c/{cid}/messages", data={"body": " <script>alert(1)</script> 你好 "},
                               headers={"X-CSRFToken": token})
    assert response.status_code == 201
    assert 'data-testid="message"' in response.text
    assert f'data-conversation-id="{cid}"' in response.text
    assert 'data-sender-id="b1"' in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; 你好" in response.text
    assert "<script>alert" not in response.text


def test_empty_and_too_long_bodies_get_422_with_a_message_and_store_nothing(app_client) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(app_client, "b1", target="m1")
    cid = open_conversation_id(app_client, "m1")
    empty = app_client.post(f"/chat/c/{cid}/messages", data={"body": "   "}, headers={"X-CSRFToken": token})
    assert empty.status_code == 422
    assert "消息不能为空" in empty.text
    long = app_client.post(f"/chat/c/{cid}/messages", data={"body": "长" * 5001}, headers={"X-CSRFToken": token})
    assert long.status_code == 422
    assert "最多 5000 个字符" in long.text
    page = app_client.get(f"/chat/c/{cid}")
    assert 'data-testid="message"' not in page.text


def test_post_without_csrf_token_is_refused(app_client) -> None:  # type: ignore[no-untyped-def]
    sign_in(app_client, "b1", target="m1")
    cid = open_conversation_id(app_client, "m1")
    response = app_client.post(f"/chat/c/{cid}/messages", data={"body": "hi"})
    assert response.status_code == 403
    forged = app_client.post(f"/chat/c/{cid}/messages", data={"body": "hi"}, headers={"X-CSRFToken": "forged"})
    assert forged.status_code == 403
    assert 'data-testid="message"' not in app_client.get(f"/chat/c/{cid}").text


def test_csrf_token_in_the_form_field_is_accepted(app_client) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(app_client, "b1", target="m1")
    cid = open_conversation_id(app_client, "m1")
    response = app_client.post(f"/chat/c/{cid}/messages", data={"body": "表单", "_csrf_token": token})
    assert response.status_code == 201


# What a person can type. Characters that draw something: letters, digits, punctuation and symbols, but for the few
# that draw nothing although their category says otherwise (CONTRACT: a message needs something visible): the Hangul
# fillers and U+2800, U+303F, U+1D159, U+FFFC.
DRAWS_NOTHING = "\u115f\u1160\u3164\uffa0\u2800\u303f\U0001d159\ufffc"
INK = st.characters(categories=("L", "N", "P", "S"), exclude_characters=DRAWS_NOTHING)
# What may stand between them: spaces of every kind, line breaks as any system writes them, tabs, zero-width joiners.
BETWEEN = st.sampled_from([" ", "\u3000", "\u00a0", "\n", "\r\n", "\r", "\t", "\u200b", "\u200d", "\u202e", "\u202c"])
# Nothing to see: white space, line breaks, zero-width and fill characters only.
NOTHING = st.text(alphabet=st.sampled_from([" ", "\u3000", "\n", "\t", "\u200b", "\u2060", "\ufeff", *DRAWS_NOTHING]),
                  max_size=20)
# Controls other than line breaks and tabs, which no keyboard types and no screen shows.
CONTROL = st.sampled_from(["\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\x9f"])
HOSTILE = st.sampled_from(["<script>alert(1)</script>", "\u202eevil\u202c", "😀🧧" * 3, "<a href=javascript:x>x</a>",
                           "&lt;b&gt;", "{{ 7*7 }}", "' OR 1=1 --"])
around = st.lists(INK | BETWEEN, max_size=30).map("".join)
typed = st.tuples(around, INK, around).map("".join) | HOSTILE  # at least one character to see


def as_stored(typed_text: str) -> str:
    """The text as it is kept and shown (CONTRACT): line breaks made "\\n", white space trimmed at both ends."""
    return typed_text.replace("\r\n", "\n").replace("\r", "\n").strip()


@pytest.fixture
def unlimited_client(database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The app with a rate limit far above what the examples send."""
    app = create_app(make_settings(database_url, tmp_path, message_limit=(100_000, 10.0)))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client


def shown_text(page: str, message_id: str) -> str:
    """The text of message `message_id`'s bubble, unescaped, as a person reads it."""
    found = re.search(rf'data-message-id="{message_id}".*?<div class="msg-bubble"[^>]*>(.*?)</div>', page, re.S)
    assert found is not None
    assert "<script" not in found.group(1) and "<a " not in found.group(1)
    return html.unescape(found.group(1))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=typed)
def test_anything_typed_with_something_to_see_is_stored_and_shown_exactly_as_text(unlimited_client: TestClient,
                                                                                  body: str) -> None:
    token = sign_in(unlimited_client, "b1", target="m1")
    cid = open_conversation_id(unlimited_client, "m1")
    response = unlimited_client.post(f"/chat/c/{cid}/messages", data={"body": body}, headers={"X-CSRFToken": token})
    assert response.status_code == 201, response.text
    message_id = re.search(r'data-message-id="(\d+)"', response.text).group(1)  # type: ignore[union-attr]
    assert shown_text(response.text, message_id) == as_stored(body)  # the text exactly, as text
    page = unlimited_client.get(f"/chat/c/{cid}").text
    assert shown_text(page, message_id) == as_stored(body)  # read back from the database


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=NOTHING | st.tuples(typed, CONTROL, typed).map("".join))
def test_text_with_nothing_to_see_or_a_control_character_is_refused_in_the_composer(unlimited_client: TestClient,
                                                                                    body: str) -> None:
    token = sign_in(unlimited_client, "b1", target="m1")
    cid = open_conversation_id(unlimited_client, "m1")
    before = unlimited_client.get(f"/chat/c/{cid}").text.count('data-testid="message"')
    response = unlimited_client.post(f"/chat/c/{cid}/messages", data={"body": body}, headers={"X-CSRFToken": token})
    assert response.status_code == 422
    assert 'data-testid="composer-error"' in response.text
    assert unlimited_client.get(f"/chat/c/{cid}").text.count('data-testid="message"') == before  # nothing stored
