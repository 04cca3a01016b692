"""Platform intervention (平台介入): either side of a buyer–merchant conversation asks the platform in; its support
person joins the same conversation, all three see every message live, the record becomes evidence (no recall of what
was said after the request), support leaves when it is settled, and the transcript's digest can be recomputed by
anyone holding the JSON. Real sockets (`kefu serve`), on SQLite and MariaDB."""

from __future__ import annotations

import hashlib
import json
import re

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.chat import conversations as convs
from app.chat import members
from app.chat import messages as msgs
from app.chat.people import get_user
from app.db.engine import make_engine, make_sessionmaker
from app.db.migrate import downgrade, upgrade
from app.db.models import AuditEntry, Conversation, Member
from tests.admin_support import make_admin, sign_in_admin, use_fast_hashing
from tests.streams import Browser, OpenBrowser, Stream, json_data, root_attributes
from tests.support import ServerProcess

SUPPORT = "p1"  # the demo's platform support person (KEFU_SUPPORT_USER's default)


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fast_hashing(monkeypatch)


def three(server: ServerProcess, open_browser: OpenBrowser) -> tuple[Browser, Browser, Browser]:
    """The buyer b1 (with the conversation with m1 open), the merchant m1 and the platform's support person."""
    return open_browser(server, "b1", target="m1"), open_browser(server, "m1"), open_browser(server, SUPPORT)


def live(sender: Browser, cid: int, *streams: Stream) -> None:
    """Returns once each stream is live: `sender` posts into the conversation and every stream has the message
    (events that are not stored, such as `member`, reach only streams that listen already)."""
    sentinel = sender.post(cid, "在吗")
    for stream in streams:
        stream.opened().wait_for("message", where=lambda e: f'data-message-id="{sentinel}"' in e.data)


def ask(browser: Browser, cid: int, reason: str | None = "商家一直不发货，申请平台处理") -> httpx.Response:
    data = {} if reason is None else {"reason": reason}
    return browser.client.post(f"/chat/c/{cid}/intervention", data=data, headers={"X-CSRFToken": browser.token})


def leave(browser: Browser, cid: int) -> httpx.Response:
    return browser.client.post(f"/chat/c/{cid}/leave", headers={"X-CSRFToken": browser.token})


def recall(browser: Browser, cid: int, mid: int) -> httpx.Response:
    return browser.client.post(f"/chat/c/{cid}/messages/{mid}/recall", headers={"X-CSRFToken": browser.token})


def test_the_platform_joins_and_all_three_hear_every_message_live(
        kefu_server: ServerProcess, open_browser: OpenBrowser, db: Session) -> None:
    b1, m1, p1 = three(kefu_server, open_browser)
    cid = b1.conversation_with("m1")
    b1.post(cid, "我的订单还没发货")
    with b1.events() as buyer, m1.events() as merchant, p1.events() as support:
        support.opened()
        live(b1, cid, buyer, merchant)
        answer = ask(b1, cid)
        assert answer.status_code == 303 and answer.headers["location"].startswith(f"/chat/c/{cid}")
        for stream in (buyer, merchant, support):
            assert json_data(stream.wait_for("member")) == {"conversation_id": cid, "user_id": SUPPORT,
                                                            "action": "joined"}
            asked, joined = (root_attributes(e.data) for e in stream.messages(2))
            assert asked["data-sender-role"] == joined["data-sender-role"] == "system"
        said = p1.post(cid, "您好，平台客服介入处理")
        for stream in (buyer, merchant):
            heard = root_attributes(stream.wait_for("message").data)
            assert (int(heard["data-message-id"]), heard["data-sender-role"]) == (said, "support")
        reply = m1.post(cid, "今天就发")
        from_m1 = support.wait_for("message", where=lambda e: f'data-message-id="{reply}"' in e.data)
        heard = root_attributes(from_m1.data)
        assert heard["data-sender-role"] == "merchant"  # its own came first: every member's tabs hear each message
        typed = p1.client.post(f"/chat/c/{cid}/typing", headers={"X-CSRFToken": p1.token})
        assert typed.status_code == 204
        assert json_data(buyer.wait_for("typing")) == {"conversation_id": cid, "user_id": SUPPORT}
    page = b1.client.get(f"/chat/c/{cid}").text
    assert 'data-testid="intervention-banner"' in page and 'data-testid="leave-button"' not in page
    assert 'data-testid="intervention-button"' not in page  # asked already
    assert 'data-testid="leave-button"' in p1.client.get(f"/chat/c/{cid}").text
    db.expire_all()
    watermarks = db.scalars(select(Member).where(Member.conversation_id == cid))
    assert {m.user_id for m in watermarks} == {"b1", "m1", SUPPORT}  # a read watermark each
    assert [e.action for e in db.scalars(select(AuditEntry).order_by(AuditEntry.id))][-2:] == [
        "conversation.intervention_requested", "member.joined"]


def test_who_may_ask_and_who_may_leave(kefu_server: ServerProcess, open_browser: OpenBrowser, db: Session) -> None:
    b1, m1, p1 = three(kefu_server, open_browser)
    m2 = open_browser(kefu_server, "m2")
    cid = b1.conversation_with("m1")
    assert ask(m2, cid).status_code == 403  # not in it
    assert ask(p1, cid).status_code == 403  # the platform does not ask itself in
    for reason, why in ((None, "介入原因不能为空"), ("   ", "介入原因不能为空"), ("长" * 501, "介入原因太长了")):
        refused = ask(b1, cid, reason)  # invalid input on a page: 400 with the reason (CONTRACT.md)
        assert refused.status_code == 400 and why in refused.text
    assert ask(b1, 987654).status_code == 404
    b1_with_support = open_browser(kefu_server, "b1", target=SUPPORT)
    direct = b1_with_support.conversation_with(SUPPORT)
    assert ask(b1_with_support, direct).status_code == 403  # a buyer–support conversation has the platform already
    make_admin(db)
    with httpx.Client(base_url=kefu_server.url, timeout=10) as admin:
        token = sign_in_admin(admin)
        assert admin.post(f"/chat/c/{cid}/intervention", data={"reason": "x"},
                          headers={"X-CSRFToken": token}).status_code == 403  # admins watch, never write
    assert leave(p1, cid).status_code == 403  # not in it yet
    assert ask(m1, cid).status_code == 303  # the merchant may ask too
    assert ask(b1, cid).status_code == 409  # already in
    assert leave(b1, cid).status_code == 403  # only the platform's member ends it
    db.expire_all()
    assert db.get(Conversation, cid).support_id == SUPPORT  # type: ignore[union-attr]


def test_support_leaves_and_hears_nothing_more(kefu_server: ServerProcess, open_browser: OpenBrowser) -> None:
    b1, _m1, p1 = three(kefu_server, open_browser)
    cid = b1.conversation_with("m1")
    assert ask(b1, cid).status_code == 303
    p1_with_b2 = open_browser(kefu_server, SUPPORT, target="b2")
    direct = p1_with_b2.conversation_with("b2")
    with b1.events() as buyer, p1.events() as support:
        live(b1, cid, buyer, support)
        answer = leave(p1, cid)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/chat")
        for stream in (buyer, support):
            assert json_data(stream.wait_for("member")) == {"conversation_id": cid, "user_id": SUPPORT,
                                                            "action": "left"}
        assert "已结束介入" in buyer.wait_for("message").data
        after = b1.post(cid, "平台走了之后的话")
        sentinel = p1_with_b2.post(direct, "哨兵")
        heard = support.until("message", where=lambda e: f'data-message-id="{sentinel}"' in e.data)
        assert f'data-message-id="{after}"' not in "".join(e.data for e in heard)
    refused = p1.client.post(f"/chat/c/{cid}/messages", data={"body": "还想说"}, headers={"X-CSRFToken": p1.token})
    assert refused.status_code == 403
    assert p1.client.get(f"/chat/c/{cid}").status_code == 403
    assert 'data-testid="intervention-button"' in b1.client.get(f"/chat/c/{cid}").text  # may ask again


def test_what_was_said_after_the_request_cannot_be_recalled_and_support_sees_recalled_originals(
        kefu_server: ServerProcess, open_browser: OpenBrowser) -> None:
    b1, m1, p1 = three(kefu_server, open_browser)
    cid = b1.conversation_with("m1")
    before = m1.post(cid, "价格写错了，其实要加钱")
    assert ask(b1, cid).status_code == 303
    after = m1.post(cid, "不加钱就不发货")
    refused = recall(m1, cid, after)
    assert refused.status_code == 409 and "处理依据" in refused.text
    with p1.events() as support:
        support.opened()
        assert recall(m1, cid, before).status_code == 200  # said before anyone asked: the usual two minutes
        assert 'data-testid="recalled-original"' in json_data(support.wait_for("recall"))["html"]
    support_page = p1.client.get(f"/chat/c/{cid}").text
    assert "价格写错了" in support_page and 'data-testid="recalled-original"' in support_page
    buyer_page = b1.client.get(f"/chat/c/{cid}").text
    assert "价格写错了" not in buyer_page and "不加钱就不发货" in buyer_page


def test_the_transcript_is_for_members_and_admins_and_its_digest_can_be_recomputed(
        kefu_server: ServerProcess, open_browser: OpenBrowser, db: Session) -> None:
    b1, m1, p1 = three(kefu_server, open_browser)
    b2 = open_browser(kefu_server, "b2")
    cid = b1.conversation_with("m1")
    said = b1.post(cid, "发货了吗 \"引号\" 与 <标签>")
    assert ask(b1, cid).status_code == 303
    p1.post(cid, "平台已记录")
    raw = b1.client.get(f"/chat/c/{cid}/transcript.json")
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("application/json")
    document = json.loads(raw.content)
    assert raw.content == json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    kinds = [(m["sender"]["role"], m["kind"]) for m in document["messages"]]
    assert kinds == [("buyer", "text"), ("system", "system"), ("system", "system"), ("support", "text")]
    assert document["messages"][0]["id"] == said and document["conversation"]["intervention_at"]
    page = b1.client.get(f"/chat/c/{cid}/transcript").text
    shown = re.search(r'data-testid="transcript-digest">([0-9a-f]{64})<', page)
    assert shown and shown.group(1) == hashlib.sha256(raw.content).hexdigest()
    assert page.count('data-testid="transcript-entry"') == 4 and "&lt;标签&gt;" in page
    assert m1.client.get(f"/chat/c/{cid}/transcript.json").content == raw.content  # two copies compare equal
    assert p1.client.get(f"/chat/c/{cid}/transcript.json").status_code == 200
    assert b2.client.get(f"/chat/c/{cid}/transcript.json").status_code == 403
    assert b2.client.get(f"/chat/c/{cid}/transcript").status_code == 403
    with httpx.Client(base_url=kefu_server.url, timeout=10) as stranger:
        assert stranger.get(f"/chat/c/{cid}/transcript.json").status_code == 401
    make_admin(db)
    with httpx.Client(base_url=kefu_server.url, timeout=10) as admin:
        sign_in_admin(admin)
        assert admin.get(f"/chat/c/{cid}/transcript.json").content == raw.content


def test_the_revision_upgrades_a_database_with_conversations_and_downgrades_an_intervention_away(
        database_url: str) -> None:
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    try:
        with sessions() as db:
            b1, m1 = get_user(db, "b1"), get_user(db, "m1")
            cid = convs.get_or_create_conversation(db, b1, m1).id  # type: ignore[arg-type]
            first = msgs.send_message(db, cid, "b1", "升级之前的话").id
            db.commit()
        downgrade(database_url, "0012_search")  # a database as the previous release left it, with its data
        upgrade(database_url)
        with sessions() as db:
            conversation = convs.get_conversation(db, cid)
            assert convs.participants(conversation) == ("b1", "m1") and conversation.intervention_at is None
            assert convs.total_unread(db, "m1") == 1  # the watermarks came through unchanged
            members.request_intervention(db, cid, "b1", SUPPORT, "升级之后申请介入")
            assert convs.participants(convs.get_conversation(db, cid)) == ("b1", "m1", SUPPORT)
        downgrade(database_url, "0012_search")  # the platform's membership goes, the record stays
        with engine.connect() as connection:
            people = connection.execute(text("SELECT user_id FROM conversation_members WHERE conversation_id = :c"),
                                        {"c": cid}).scalars().all()
            bodies = connection.execute(text("SELECT body FROM messages WHERE conversation_id = :c ORDER BY id"),
                                        {"c": cid}).scalars().all()
        assert sorted(people) == ["b1", "m1"]
        assert bodies[0] == "升级之前的话" and "升级之后申请介入" in bodies[1] and len(bodies) == 3
        upgrade(database_url)
        with sessions() as db:
            assert convs.participants(convs.get_conversation(db, cid)) == ("b1", "m1")
            assert msgs.send_message(db, cid, "m1", "又能聊了").id > first
    finally:
        upgrade(database_url)
        engine.dispose()


def test_making_transcripts_is_limited_per_person(kefu_server: ServerProcess, open_browser: OpenBrowser) -> None:
    b1 = open_browser(kefu_server, "b1", target="m1")
    cid = b1.conversation_with("m1")
    answers = [b1.client.get(f"/chat/c/{cid}/transcript.json").status_code for _ in range(7)]
    assert answers == [200] * 6 + [429]
    refused = b1.client.get(f"/chat/c/{cid}/transcript")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1 and "太频繁" in refused.text
