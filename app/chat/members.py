"""Platform intervention (平台介入): a buyer–merchant conversation takes the platform's support person in as a third
member, and lets them go again.

Either side of a buyer–merchant conversation may ask, with a reason; the support person (Settings.support_user)
joins at once: from then on they receive every message, typing and read receipt of the conversation, have their
own unread count and read watermark, and may write. Messages sent from the request on cannot be recalled
(app.chat.recall: they are evidence), and the support person sees recalled messages' originals, as admins do. When
it is settled the support person leaves: they hear nothing more of the conversation, and the history keeps the
notices of who asked, why, who joined and who left. A conversation is a pair plus at most this one platform member:
it is stored on the conversation row (`support_id`), so the send path reads its members with the row it locks
anyway, and a send costs no more queries than before.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.chat import audit, webhooks
from app.chat.conversations import participants
from app.chat.errors import Conflict, Forbidden, NotFound
from app.chat.messages import Outgoing, Sent, send
from app.chat.text import clean_text
from app.db.models import Conversation, Member, User, utcnow
from app.i18n import gettext as _

MAX_REASON_LENGTH = 500


@dataclass(frozen=True)
class MemberChange:
    """A member joined or left (committed): who, what (`action`: "joined" or "left"), everyone to tell (`audience`:
    the members before and after the change), and the notices it posted (stored messages, to deliver)."""

    conversation_id: int
    user_id: str
    action: str
    audience: tuple[str, ...]
    notices: list[Sent]


def clean_reason(raw: str | None) -> str:
    """The reason for asking the platform in: 1–MAX_REASON_LENGTH characters of text (app.chat.text's rule), or
    InvalidInput (field `reason`)."""
    return clean_text(raw, _("介入原因"), MAX_REASON_LENGTH, multiline=True)


def may_ask_platform(conversation: Conversation, roles: dict[str, str]) -> bool:
    """Whether the platform may be asked into this conversation: a buyer and a merchant talk, and no platform member
    is in it now (`roles`: user id → role of its pair)."""
    pair = sorted(roles.get(uid, "") for uid in (conversation.user_a, conversation.user_b))
    return pair == ["buyer", "merchant"] and conversation.support_id is None


def request_intervention(session: Session, conversation_id: int, asker_id: str, support_id: str,
                         raw_reason: str | None) -> MemberChange:
    """`asker_id` (the buyer or the merchant of the conversation) asks the platform in: the support person
    `support_id` becomes a member (their watermark at the newest message), the request and the join are audited,
    the webhooks `conversation.intervention_requested` and `member.joined` queued, and two notices posted (who asked
    and why; who joined). Raises InvalidInput (field `reason`), NotFound (no such conversation), Forbidden (not a
    member of the pair, or not a buyer–merchant conversation), Conflict (the platform is already in it, or no
    support person is set up)."""
    reason = clean_reason(raw_reason)
    conversation = _locked(session, conversation_id)
    if asker_id not in (conversation.user_a, conversation.user_b):
        raise Forbidden(_("只有会话双方可以申请平台介入。"))
    if conversation.support_id is not None:
        raise Conflict(_("平台客服已经在这个会话里了。"))
    wanted = [conversation.user_a, conversation.user_b, support_id]
    people = {user.id: user for user in session.scalars(select(User).where(User.id.in_(wanted)))}
    if not may_ask_platform(conversation, {uid: u.role for uid, u in people.items()}):
        raise Forbidden(_("只有买家和商家之间的会话可以申请平台介入。"))
    support = people.get(support_id)
    if support is None or support.role != "support":
        raise Conflict(_("平台客服尚未设置，暂时无法申请介入。"))
    buyer = conversation.user_a if people[conversation.user_a].role == "buyer" else conversation.user_b
    conversation.support_id = support_id
    conversation.intervention_at = conversation.intervention_at or utcnow()
    session.add(Member(conversation_id=conversation_id, user_id=support_id, peer_id=buyer,
                       last_read_message_id=conversation.last_message_id or 0,
                       last_activity_at=conversation.last_activity_at))
    detail = f"conversation={conversation_id} by={asker_id}"
    audit.record(session, "conversation.intervention_requested", asker_id, detail=f"{detail} reason={reason[:300]}")
    audit.record(session, "member.joined", support_id, detail=f"conversation={conversation_id}")
    data = {"conversation_id": conversation_id, "requested_by": asker_id, "reason": reason}
    webhooks.enqueue(session, "conversation.intervention_requested", data)
    webhooks.enqueue(session, "member.joined", {"conversation_id": conversation_id, "user_id": support_id,
                                                "role": "support"})
    members = participants(conversation)
    session.commit()
    asked = _("{name} 申请平台介入：{reason}").format(name=people[asker_id].name, reason=reason)
    joined = _("平台客服 {name} 已加入会话").format(name=support.name)
    return MemberChange(conversation_id, support_id, "joined", members,
                        [_notice(session, conversation_id, asked), _notice(session, conversation_id, joined)])


def leave(session: Session, conversation_id: int, user_id: str) -> MemberChange:
    """The platform's member `user_id` leaves the conversation (the intervention is over): their membership ends,
    audited, webhook `member.left` queued, a notice posted. Raises NotFound, Forbidden (not the platform's member of
    this conversation)."""
    conversation = _locked(session, conversation_id)
    if conversation.support_id != user_id:
        raise Forbidden(_("只有介入的平台客服可以结束介入。"))
    audience = participants(conversation)
    conversation.support_id = None
    member = session.get(Member, (conversation_id, user_id))
    if member is not None:
        session.delete(member)
    audit.record(session, "member.left", user_id, detail=f"conversation={conversation_id}")
    webhooks.enqueue(session, "member.left", {"conversation_id": conversation_id, "user_id": user_id,
                                              "role": "support"})
    name = session.get(User, user_id).name  # type: ignore[union-attr]
    session.commit()
    left = _("平台客服 {name} 已结束介入，退出会话").format(name=name)
    return MemberChange(conversation_id, user_id, "left", audience, [_notice(session, conversation_id, left)])


def _locked(session: Session, conversation_id: int) -> Conversation:
    """The conversation row, locked for this transaction (sends wait: a member change and a send never cross);
    NotFound."""
    conversation = session.get(Conversation, conversation_id, with_for_update=True)
    if conversation is None:
        raise NotFound("conversation")
    return conversation


def _notice(session: Session, conversation_id: int, text: str) -> Sent:
    """A system notice in the conversation (stored and committed by the one send path)."""
    return send(session, Outgoing(conversation_id, None, text, kind="system"))
