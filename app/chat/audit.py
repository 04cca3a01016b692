"""The audit log: who signed in (or tried), every change to admin accounts, and every recalled message."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.chat.paging import page_of
from app.db.models import AuditEntry
from app.i18n import gettext as _

ACTIONS = (
    "admin.sign_in",
    "admin.sign_in_failed",
    "admin.sign_in_throttled",
    "admin.created",
    "admin.password_changed",
    "admin.disabled",
    "admin.enabled",
    "link.sign_in",
    "link.refused",
    "message.recalled",
    "conversation.intervention_requested",
    "member.joined",
    "member.left",
)
PAGE_SIZE = 50


def label(action: str) -> str:
    """What an audit action means, in words for the reader (zh-CN first: "admin.sign_in" is "管理员登录"); an action
    without a label of its own (one added later) shows as its code."""
    labels = {
        "admin.sign_in": _("管理员登录"),
        "admin.sign_in_failed": _("管理员登录失败"),
        "admin.sign_in_throttled": _("登录尝试过多，已限制"),
        "admin.created": _("创建管理员"),
        "admin.password_changed": _("修改管理员密码"),
        "admin.disabled": _("停用管理员"),
        "admin.enabled": _("启用管理员"),
        "link.sign_in": _("通过链接登录"),
        "link.refused": _("登录链接被拒绝"),
        "message.recalled": _("撤回消息"),
        "conversation.intervention_requested": _("申请平台介入"),
        "member.joined": _("加入会话"),
        "member.left": _("退出会话"),
    }
    return labels.get(action, action)
MAX_ACTOR = 64


def record(session: Session, action: str, actor: str, client: str = "", detail: str = "") -> None:
    """One entry (flushed). The actor may be text someone typed (a username tried): it is kept printable, control
    characters shown escaped, and at most 64 characters."""
    assert action in ACTIONS, action
    actor = "".join(c if c.isprintable() else repr(c)[1:-1] for c in actor)[:MAX_ACTOR]
    session.add(AuditEntry(action=action, actor=actor, client=client[:100], detail=detail[:500]))
    session.flush()


def entries(session: Session, before: int | None = None, action: str | None = None,
            limit: int = PAGE_SIZE) -> tuple[list[AuditEntry], int | None]:
    """A page of entries, newest first, and the id to continue before (None at the end)."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit + 1)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    if action:
        query = query.where(AuditEntry.action == action)
    rows, more = page_of(list(session.scalars(query)), limit)
    return rows, (rows[-1].id if more and rows else None)
