"""A page's send, retried, stores one message: every send carries its own Idempotency-Key (scoped to the sender).

The page retries a send whose answer it never got (a dropped connection, a 502 from the proxy, a 503 from a
stopping process): whatever reached the server before, one message is stored and every attempt is answered with it.
On SQLite and MariaDB, through the real app.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest
from litestar.testing import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.chat.people import get_user
from app.chat.quick_replies import list_replies
from app.db.engine import make_engine
from app.db.models import Attachment, Message
from tests.dom import parse
from tests.file_samples import files_under, image_bytes
from tests.seeding import count
from tests.support import ServerProcess, free_port, other_browser, server_env, sign_in_to


def key() -> str:
    return secrets.token_urlsafe(16)  # what the page sends: 22 characters of base64url


def post_text(client: TestClient, token: str, cid: int, body: str, idempotency_key: str | None):  # type: ignore[no-untyped-def]
    headers = {"X-CSRFToken": token} | ({"Idempotency-Key": idempotency_key} if idempotency_key else {})
    return client.post(f"/chat/c/{cid}/messages", data={"body": body}, headers=headers)


def bodies(db: Session) -> list[str]:
    db.rollback()
    return list(db.scalars(select(Message.body).order_by(Message.id)))


def message_id(html: str) -> str:
    return parse(html).one(testid="message").get("data-message-id") or ""


@pytest.fixture
def b1(app_client: TestClient) -> tuple[TestClient, str, int]:
    token, cid = sign_in_to(app_client, "b1", "m1")
    return app_client, token, cid


def test_a_retried_text_is_stored_once_and_every_attempt_gets_the_same_message(
        b1: tuple[TestClient, str, int], db: Session) -> None:
    client, token, cid = b1
    same = key()
    answers = [post_text(client, token, cid, "在吗？重试三次", same) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert len({message_id(a.text) for a in answers}) == 1
    assert parse(answers[0].text).one(testid="message").get("data-client-key") == same
    assert post_text(client, token, cid, "在吗？重试三次", key()).status_code == 201  # a new key: a new message
    assert post_text(client, token, cid, "没有键也照常发送", None).status_code == 201
    assert bodies(db) == ["在吗？重试三次", "在吗？重试三次", "没有键也照常发送"]


def test_a_key_is_the_senders_own_and_never_names_another_message(
        b1: tuple[TestClient, str, int], db: Session) -> None:
    client, token, cid = b1
    used = key()
    assert post_text(client, token, cid, "第一条", used).status_code == 201
    reused = post_text(client, token, cid, "另一条", used)
    assert reused.status_code == 422
    assert "Idempotency-Key" in parse(reused.text).text()
    with other_browser(client) as m1:  # the peer sees the key on the message: using it is their own key
        m1_token, _ = sign_in_to(m1, "m1", "b1")
        assert post_text(m1, m1_token, cid, "商家用同一个键", used).status_code == 201
    assert bodies(db) == ["第一条", "商家用同一个键"]


MALFORMED = ["short", "x" * 65, "有中文的键abcdefgh", "spaces in key", "semi;colon12", "a/b/c/d/e/f"]


@pytest.mark.parametrize("bad", MALFORMED)
def test_a_malformed_key_is_refused_naming_the_header(b1: tuple[TestClient, str, int], db: Session, bad: str) -> None:
    client, token, cid = b1
    response = client.post(f"/chat/c/{cid}/messages", data={"body": "你好"},
                           headers={"X-CSRFToken": token, "Idempotency-Key": bad.encode()})
    assert response.status_code == 422, response.text
    assert "Idempotency-Key 无效" in parse(response.text).text()
    assert bodies(db) == []


def test_a_retried_upload_keeps_one_message_and_one_file(b1: tuple[TestClient, str, int], db: Session,
                                                         tmp_path) -> None:  # type: ignore[no-untyped-def]
    client, token, cid = b1
    same = key()
    photo = image_bytes("PNG")
    answers = [client.post(f"/chat/c/{cid}/files", files={"file": ("照片.png", photo, "image/png")},
                           headers={"X-CSRFToken": token, "Idempotency-Key": same}) for _ in range(2)]
    assert [a.status_code for a in answers] == [201, 201]
    assert message_id(answers[0].text) == message_id(answers[1].text)
    assert count(db, Message) == 1 and count(db, Attachment) == 1
    assert len(files_under(tmp_path / "uploads")) == 2  # the file and its thumbnail, once


def test_a_retried_quick_reply_is_sent_once(app_client: TestClient, db: Session) -> None:
    token, cid = sign_in_to(app_client, "m1", "b1")
    reply = list_replies(db, get_user(db, "m1"))[0]
    same = key()
    answers = [app_client.post(f"/chat/c/{cid}/quick-replies/{reply.id}",
                               headers={"X-CSRFToken": token, "Idempotency-Key": same}) for _ in range(2)]
    assert [a.status_code for a in answers] == [201, 201]
    assert bodies(db) == [reply.body]


# --- a retry racing its first try, through a real server ---

@contextmanager
def conversation_held(database_url: str, cid: int, seconds: float) -> Iterator[None]:
    """Holds what a send must wait for (MariaDB: the conversation's row lock; SQLite: the write lock) for `seconds`
    after the block has started its requests, then lets them go all at once."""
    if database_url.startswith("sqlite"):
        holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
    else:
        engine = make_engine(database_url)
        holder = engine.connect()
        holder.execute(text("SELECT id FROM conversations WHERE id = :cid FOR UPDATE"), {"cid": cid})
    try:
        yield
        time.sleep(seconds)  # the requests are now waiting on the lock (nothing to observe from outside)
    finally:
        holder.rollback() if not database_url.startswith("sqlite") else holder.execute("ROLLBACK")
        holder.close()


def test_copies_of_one_send_arriving_at_once_store_one_message_and_all_get_it(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = ServerProcess(server_env(database_url, tmp_path), free_port()).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            token, cid = sign_in_to(client, "b1", "m1")
            same = key()

            def post(_: int) -> httpx.Response:
                return client.post(f"/chat/c/{cid}/messages", data={"body": "同时到达的两份"},
                                   headers={"X-CSRFToken": token, "Idempotency-Key": same})

            with ThreadPoolExecutor(4) as pool:
                with conversation_held(database_url, cid, 1.5):
                    answers = [pool.submit(post, n) for n in range(4)]
                results = [answer.result() for answer in answers]
    finally:
        server.stop()
    assert [r.status_code for r in results] == [201] * 4, [r.text[:200] for r in results]
    assert len({message_id(r.text) for r in results}) == 1
    engine = make_engine(database_url)
    with engine.connect() as db:
        assert db.scalar(select(func.count()).select_from(Message).where(Message.body == "同时到达的两份")) == 1
    engine.dispose()


def test_a_retried_image_is_not_decoded_again_and_other_bytes_under_its_key_are_refused(
        b1: tuple[TestClient, str, int], db: Session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client, token, cid = b1
    same = key()
    photo = image_bytes("PNG")

    def upload(content: bytes):  # type: ignore[no-untyped-def]
        return client.post(f"/chat/c/{cid}/files", files={"file": ("照片.png", content, "image/png")},
                           headers={"X-CSRFToken": token, "Idempotency-Key": same})

    answers = [upload(photo) for _ in range(25)]  # more than the 20 images a person may have decoded a minute
    assert [a.status_code for a in answers] == [201] * 25
    other = upload(image_bytes("PNG", size=(80, 60)))  # the same name, other bytes
    assert other.status_code == 422 and "Idempotency-Key" in parse(other.text).text()
    assert count(db, Message) == 1 and len(files_under(tmp_path / "uploads")) == 2
