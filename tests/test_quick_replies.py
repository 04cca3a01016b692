"""Quick replies: merchants' and support's own canned answers, on SQLite and MariaDB, in the domain and through the
real app.

What people rely on: the demo seed gives m1, m2, m3 and p1 three each; the owner creates, edits, deletes and reorders
them (at most 50, each 1–500 characters, with a clear message otherwise); one click sends one into the open
conversation as a message from the owner; no one else — another merchant, support, a buyer, an admin, someone not
signed in — may change or send them, and the owner cannot send into a conversation they are not in.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from litestar.testing import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.chat import quick_replies as replies
from app.chat.demo import seed_demo
from app.chat.errors import Forbidden, InvalidInput
from app.chat.people import get_user
from app.db.models import Message, QuickReply
from tests.admin_support import make_admin, sign_in_admin, use_fast_hashing
from tests.dom import Element, parse
from tests.file_samples import Party
from tests.seeding import converse
from tests.support import csrf_of, other_browser, sign_in_to

# the demo's quick replies, as a merchant and the platform's support find them (README: the demo)
MERCHANT = ["您好，欢迎光临！请问需要什么药品？", "现货充足，今天下单明天发货。",
            "可以开增值税专用发票，下单时请备注开票信息。"]
SUPPORT = ["您好，这里是平台官方客服，请问有什么可以帮您？", "请提供订单号，我马上为您查询。",
           "已为您登记，处理结果会在 24 小时内通知您。"]
INVOICE = "可以开增值税专用发票，下单时请备注开票信息。"


def bodies(db: Session, owner_id: str) -> list[str]:
    db.rollback()  # a fresh snapshot (MariaDB's repeatable read)
    owner = get_user(db, owner_id)
    assert owner is not None
    return [r.body for r in replies.list_replies(db, owner)]


def reply_ids(db: Session, owner_id: str) -> list[int]:
    db.rollback()
    return list(db.scalars(select(QuickReply.id).where(QuickReply.owner_id == owner_id)
                           .order_by(QuickReply.position, QuickReply.id)))


def message_count(db: Session) -> int:
    db.rollback()
    return db.scalar(select(func.count()).select_from(Message)) or 0


def shown(html: str) -> list[Element]:
    """The quick replies a page or panel shows, in order."""
    return parse(html).find_all(testid="quick-reply")


def shown_bodies(html: str) -> list[str]:
    return [element.text() for element in shown(html)]


def error_text(html: str) -> str:
    return parse(html).one(testid="quick-reply-error").text()


@pytest.fixture
def m1(app_client: TestClient) -> Party:
    """m1 signed in with the conversation with b1 open."""
    token, cid = sign_in_to(app_client, "m1", "b1")
    return Party("m1", app_client, token, cid)


@pytest.fixture
def b1(m1: Party) -> Iterator[Party]:
    """b1 in their own browser, in the same conversation."""
    with other_browser(m1.client) as client:
        token, cid = sign_in_to(client, "b1", "m1")
        assert cid == m1.cid
        yield Party("b1", client, token, cid)


def post(person: Party, path: str, data: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return person.client.post(path, data=data or {}, headers={"X-CSRFToken": person.token})


# --- the demo seed ---

def test_the_demo_seed_gives_m1_m2_m3_and_p1_three_each_and_buyers_none(db: Session) -> None:
    for merchant in ("m1", "m2", "m3"):
        assert bodies(db, merchant) == MERCHANT
    assert bodies(db, "p1") == SUPPORT
    assert INVOICE in MERCHANT
    for buyer in ("b1", "b2"):
        assert reply_ids(db, buyer) == []
    seed_demo(db)  # seeding again (kefu demo seed is idempotent) neither doubles nor resets them
    db.commit()
    assert [len(bodies(db, owner)) for owner in ("m1", "m2", "m3", "p1")] == [3, 3, 3, 3]


def test_the_owner_sees_their_own_in_the_third_column(m1: Party) -> None:
    page = parse(m1.client.get("/chat", params={"target": "b1"}).text)
    column = page.one(testid="col-info")
    buttons = column.find_all(testid="quick-reply")
    assert [b.text() for b in buttons] == MERCHANT
    for button in buttons:
        assert (button.get("data-quick-reply-id") or "").isdigit()
        assert button.get("data-send-url") == f"/chat/c/{m1.cid}/quick-replies/{button.get('data-quick-reply-id')}"
    panel = m1.client.get("/chat/quick-replies", params={"cid": str(m1.cid)})
    assert panel.status_code == 200
    assert shown_bodies(panel.text) == MERCHANT


def test_buyers_have_no_quick_replies_on_their_page(b1: Party) -> None:
    page = parse(b1.client.get("/chat", params={"target": "m1"}).text)
    assert page.one(testid="col-info").find_all(testid="quick-reply") == []


# --- one click sends one ---

def test_one_click_sends_the_reply_as_a_message_from_the_owner(m1: Party, b1: Party, db: Session) -> None:
    invoice_id = reply_ids(db, "m1")[MERCHANT.index(INVOICE)]
    response = post(m1, f"/chat/c/{m1.cid}/quick-replies/{invoice_id}")
    assert response.status_code == 201, response.text
    message = parse(response.text).one(testid="message")
    assert message.get("data-sender-id") == "m1"
    assert message.get("data-conversation-id") == str(m1.cid)
    assert INVOICE in message.text()

    db.rollback()
    stored = db.scalars(select(Message).where(Message.conversation_id == m1.cid)).all()
    assert [(m.sender_id, m.body, m.kind) for m in stored] == [("m1", INVOICE, "text")]
    thread = parse(b1.client.get(f"/chat/c/{b1.cid}").text).one(testid="thread")
    received = thread.one(testid="message", data_message_id=message.get("data-message-id") or "")
    assert received.get("data-sender-id") == "m1" and INVOICE in received.text()
    assert bodies(db, "m1") == MERCHANT  # sending does not use it up


def test_a_reply_with_markup_is_sent_as_text(m1: Party, db: Session) -> None:
    created = post(m1, "/chat/quick-replies", {"body": "<script>alert(1)</script><b>加急</b>", "cid": str(m1.cid)})
    assert created.status_code == 200, created.text
    new_id = reply_ids(db, "m1")[-1]
    response = post(m1, f"/chat/c/{m1.cid}/quick-replies/{new_id}")
    assert response.status_code == 201
    assert "<script>" not in response.text
    assert parse(response.text).one(testid="message").text().count("<script>alert(1)</script><b>加急</b>") == 1


def test_support_sends_theirs_too(app_client: TestClient, db: Session) -> None:
    token, cid = sign_in_to(app_client, "p1", "b1")
    first = reply_ids(db, "p1")[0]
    response = app_client.post(f"/chat/c/{cid}/quick-replies/{first}", headers={"X-CSRFToken": token})
    assert response.status_code == 201, response.text
    assert SUPPORT[0] in parse(response.text).one(testid="message", data_sender_id="p1").text()


def test_the_owner_cannot_send_into_a_conversation_they_are_not_in(m1: Party, db: Session) -> None:
    others = converse(db, "b1", "m2")
    mine = reply_ids(db, "m1")[0]
    response = post(m1, f"/chat/c/{others}/quick-replies/{mine}")
    assert response.status_code == 403, response.text
    assert post(m1, f"/chat/c/{others + 1000}/quick-replies/{mine}").status_code == 404
    assert post(m1, f"/chat/c/{m1.cid}/quick-replies/{max(reply_ids(db, 'p1')) + 1000}").status_code == 404
    assert message_count(db) == 0


# --- the owner manages them ---

def test_the_owner_creates_edits_reorders_and_deletes(m1: Party, db: Session) -> None:
    cid = str(m1.cid)
    created = post(m1, "/chat/quick-replies", {"body": "周末照常发货。", "cid": cid})
    assert created.status_code == 200, created.text
    assert shown_bodies(created.text) == [*MERCHANT, "周末照常发货。"]
    assert bodies(db, "m1") == [*MERCHANT, "周末照常发货。"]
    first, second, third, new = reply_ids(db, "m1")

    edited = post(m1, f"/chat/quick-replies/{second}", {"body": "现货充足，下午三点前下单当天发货。", "cid": cid})
    assert edited.status_code == 200, edited.text
    expected = [MERCHANT[0], "现货充足，下午三点前下单当天发货。", MERCHANT[2], "周末照常发货。"]
    assert shown_bodies(edited.text) == expected
    assert bodies(db, "m1") == expected

    moved = post(m1, f"/chat/quick-replies/{new}/move", {"direction": "up", "cid": cid})
    assert moved.status_code == 200, moved.text
    expected = [expected[0], expected[1], expected[3], expected[2]]
    assert shown_bodies(moved.text) == expected
    assert bodies(db, "m1") == expected
    assert post(m1, f"/chat/quick-replies/{first}/move", {"direction": "down"}).status_code == 200
    expected = [expected[1], expected[0], expected[2], expected[3]]
    assert bodies(db, "m1") == expected
    # at either end, nothing changes
    assert post(m1, f"/chat/quick-replies/{second}/move", {"direction": "up"}).status_code == 200
    assert post(m1, f"/chat/quick-replies/{third}/move", {"direction": "down"}).status_code == 200
    assert bodies(db, "m1") == expected

    deleted = post(m1, f"/chat/quick-replies/{first}/delete", {"cid": cid})
    assert deleted.status_code == 200, deleted.text
    expected.remove(MERCHANT[0])
    assert shown_bodies(deleted.text) == expected
    assert bodies(db, "m1") == expected
    panel = m1.client.get("/chat/quick-replies", params={"cid": cid})
    assert shown_bodies(panel.text) == expected  # as it is after a reload
    # the owner's buttons send into the open conversation
    for button in shown(panel.text):
        assert (button.get("data-send-url") or "").startswith(f"/chat/c/{cid}/quick-replies/")
    for other in ("m2", "m3"):
        assert bodies(db, other) == MERCHANT  # no one else's changed


def test_a_bad_direction_changes_nothing(m1: Party, db: Session) -> None:
    first = reply_ids(db, "m1")[0]
    response = post(m1, f"/chat/quick-replies/{first}/move", {"direction": "sideways"})
    assert response.status_code == 400, response.text  # a request no page of Kefu's makes: a bad request
    assert bodies(db, "m1") == MERCHANT


@pytest.mark.parametrize("body", ["好", "好" * 500, "a" * 500, "第一行\n第二行"])
def test_one_to_500_characters_are_accepted(m1: Party, db: Session, body: str) -> None:
    response = post(m1, "/chat/quick-replies", {"body": body, "cid": str(m1.cid)})
    assert response.status_code == 200, response.text
    assert bodies(db, "m1") == [*MERCHANT, body]


@pytest.mark.parametrize(("body", "words"), [
    ("", "不能为空"),
    ("   \n\t  ", "不能为空"),
    ("好" * 501, "500"),
    ("a" * 501, "500"),
    ("\u200b\u3164\u2800", "看不见"),
])
def test_empty_and_too_long_are_refused_with_a_clear_message(m1: Party, db: Session, body: str, words: str) -> None:
    created = post(m1, "/chat/quick-replies", {"body": body, "cid": str(m1.cid)})
    assert created.status_code == 422, created.text
    assert words in error_text(created.text)
    assert shown_bodies(created.text) == MERCHANT  # the panel still shows the replies as they are
    first = reply_ids(db, "m1")[0]
    edited = post(m1, f"/chat/quick-replies/{first}", {"body": body, "cid": str(m1.cid)})
    assert edited.status_code == 422, edited.text
    assert words in error_text(edited.text)
    assert bodies(db, "m1") == MERCHANT


def test_at_most_50_each(m1: Party, db: Session) -> None:
    owner = get_user(db, "m1")
    assert owner is not None
    for n in range(46):  # 3 seeded + 46 = 49
        replies.create(db, owner, f"常用回复 {n}")
    db.commit()
    fiftieth = post(m1, "/chat/quick-replies", {"body": "第五十条", "cid": str(m1.cid)})
    assert fiftieth.status_code == 200, fiftieth.text
    assert len(shown(fiftieth.text)) == 50
    refused = post(m1, "/chat/quick-replies", {"body": "第五十一条", "cid": str(m1.cid)})
    assert refused.status_code == 422, refused.text
    assert "50" in error_text(refused.text)
    assert len(bodies(db, "m1")) == 50 and "第五十一条" not in bodies(db, "m1")
    with pytest.raises(InvalidInput):
        replies.create(db, owner, "第五十一条")
    db.rollback()
    # the limit is each person's own
    m2 = get_user(db, "m2")
    assert m2 is not None
    replies.create(db, m2, "m2 的第四条")
    db.commit()
    assert len(bodies(db, "m2")) == 4
    # after deleting one there is room again
    assert post(m1, f"/chat/quick-replies/{reply_ids(db, 'm1')[0]}/delete").status_code == 200
    assert post(m1, "/chat/quick-replies", {"body": "第五十一条"}).status_code == 200
    assert len(bodies(db, "m1")) == 50


# --- no one else ---

def test_in_the_domain_only_the_owner_may_touch_them(db: Session) -> None:
    m1, m2, b1 = (get_user(db, uid) for uid in ("m1", "m2", "b1"))
    assert m1 is not None and m2 is not None and b1 is not None
    first = reply_ids(db, "m1")[0]
    with pytest.raises(Forbidden):
        replies.create(db, b1, "买家的快捷回复")
    for act in (lambda: replies.update(db, m2, first, "改掉"), lambda: replies.delete(db, m2, first),
                lambda: replies.move(db, m2, first, "down"), lambda: replies.get_own(db, b1, first)):
        with pytest.raises(Forbidden):
            act()
    db.rollback()
    assert bodies(db, "m1") == MERCHANT


@pytest.mark.parametrize(("intruder", "peer"), [("m2", "b1"), ("p1", "m1"), ("b1", "m1")])
def test_others_get_403_for_changing_or_sending_someone_elses(
    m1: Party, db: Session, intruder: str, peer: str
) -> None:
    victim = reply_ids(db, "m1")
    with other_browser(m1.client) as client:
        token, own_cid = sign_in_to(client, intruder, peer)
        other = Party(intruder, client, token, own_cid)
        attempts = [
            (f"/chat/quick-replies/{victim[0]}", {"body": "被改掉了"}),
            (f"/chat/quick-replies/{victim[0]}/delete", {}),
            (f"/chat/quick-replies/{victim[2]}/move", {"direction": "up"}),
            (f"/chat/c/{own_cid}/quick-replies/{victim[0]}", {}),  # into the intruder's own conversation
            (f"/chat/c/{m1.cid}/quick-replies/{victim[0]}", {}),  # into m1's (b1 is in it)
        ]
        for path, data in attempts:
            response = post(other, path, data)
            assert response.status_code == 403, (intruder, path, response.status_code)
        if intruder == "b1":
            created = post(other, "/chat/quick-replies", {"body": "买家也想要快捷回复"})
            assert created.status_code == 403
            assert reply_ids(db, "b1") == []
    assert bodies(db, "m1") == MERCHANT
    assert message_count(db) == 0


def test_admins_and_people_not_signed_in_cannot_touch_them(
    m1: Party, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = reply_ids(db, "m1")[0]
    use_fast_hashing(monkeypatch)
    make_admin(db)
    paths = [("/chat/quick-replies", {"body": "管理员的"}), (f"/chat/quick-replies/{first}", {"body": "改掉"}),
             (f"/chat/quick-replies/{first}/delete", {}), (f"/chat/quick-replies/{first}/move", {"direction": "down"}),
             (f"/chat/c/{m1.cid}/quick-replies/{first}", {})]
    with other_browser(m1.client) as admin:
        token = sign_in_admin(admin)
        for path, data in paths:
            assert admin.post(path, data=data, headers={"X-CSRFToken": token}).status_code == 403, path
    with other_browser(m1.client) as anonymous:
        token = csrf_of(anonymous.get("/login").text)
        for path, data in paths:
            assert anonymous.post(path, data=data, headers={"X-CSRFToken": token}).status_code == 401, path
        assert anonymous.get("/chat/quick-replies").status_code == 401
    assert bodies(db, "m1") == MERCHANT
    assert message_count(db) == 0


def test_without_the_csrf_token_nothing_changes(m1: Party, db: Session) -> None:
    first = reply_ids(db, "m1")[0]
    assert m1.client.post("/chat/quick-replies", data={"body": "伪造"}).status_code == 403
    assert m1.client.post(f"/chat/quick-replies/{first}/delete", headers={"X-CSRFToken": "forged"}).status_code == 403
    assert m1.client.post(f"/chat/c/{m1.cid}/quick-replies/{first}").status_code == 403
    assert bodies(db, "m1") == MERCHANT
    assert message_count(db) == 0


def test_unknown_ids_get_404(m1: Party, db: Session) -> None:
    missing = str(max(reply_ids(db, "p1")) + 1000)
    attempts = [
        (f"/chat/quick-replies/{missing}", {"body": "x"}),
        (f"/chat/quick-replies/{missing}/delete", {}),
        (f"/chat/quick-replies/{missing}/move", {"direction": "up"}),
        ("/chat/quick-replies/abc", {"body": "x"}),
        (f"/chat/c/{m1.cid}/quick-replies/{missing}", {}),
    ]
    for path, data in attempts:
        assert post(m1, path, data).status_code == 404, path
    assert bodies(db, "m1") == MERCHANT
