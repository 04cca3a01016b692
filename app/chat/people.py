"""People: buyers, merchants, support and admins, and who may talk to whom."""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.chat.errors import Forbidden, InvalidInput
from app.chat.text import clean_text
from app.db.models import ROLES, User
from app.i18n import gettext as _

CHAT_ROLES = ("buyer", "merchant", "support")
# The pairs that may hold a conversation (order does not matter).
ALLOWED_PAIRS = {
    frozenset({"buyer", "merchant"}),
    frozenset({"buyer", "support"}),
    frozenset({"merchant", "support"}),
}
MAX_ID_LENGTH = 64
MAX_NAME_LENGTH = 100
# Ids Kefu keeps for itself (the sender of notices is "kefu-system"), in any mix of upper and lower case: no one
# signs in as them, and no link, API call or command creates or renames them.
RESERVED_PREFIX = "kefu-"


def is_reserved(user_id: str) -> bool:
    """Whether `user_id` belongs to Kefu itself (starts with `kefu-`, ignoring case)."""
    return user_id[: len(RESERVED_PREFIX)].lower() == RESERVED_PREFIX


def refuse_reserved(user_id: str) -> None:
    """Forbidden (its text for people to read) when `user_id` is reserved for Kefu itself."""
    if is_reserved(user_id):
        raise Forbidden(_("“{user_id}”是系统保留的 ID，不能登录或修改。").format(user_id=user_id[:MAX_ID_LENGTH]))


def may_sign_in(user: User | None) -> bool:
    """Whether this stored person may sign in to the chat (by link, demo sign-in or session): buyers, merchants
    and support people, never admins (they use /login), the system sender, or any reserved id."""
    return user is not None and user.role in CHAT_ROLES and not is_reserved(user.id)


def can_talk(role_a: str, role_b: str) -> bool:
    """Whether people of these two roles may have a conversation (buyer–merchant, buyer–support, merchant–support)."""
    return frozenset({role_a, role_b}) in ALLOWED_PAIRS


def get_user(session: Session, user_id: str) -> User | None:
    """The person (or admin) with this id, or None (also for an id that is not valid)."""
    if not valid_user_id(user_id):
        return None
    return session.get(User, user_id)


_PERSON = select(User.__table__).where(User.__table__.c.id == bindparam("uid"))  # prebuilt, for the hot path


def get_person_detached(session: Session, user_id: str) -> User | None:
    """get_user for the busiest route: one prebuilt statement and a User not tracked by the session (read its
    columns; it loads no relationships)."""
    if not valid_user_id(user_id):
        return None
    row = session.connection().execute(_PERSON, {"uid": user_id}).one_or_none()
    return User(**row._asdict()) if row is not None else None


def get_users(session: Session, user_ids: set[str]) -> dict[str, User]:
    """The people with these ids, by id, in one query (unknown ids left out)."""
    if not user_ids:
        return {}
    rows = session.scalars(select(User).where(User.id.in_(user_ids)))
    return {user.id: user for user in rows}


def valid_user_id(user_id: str) -> bool:
    """Ids are short, printable ASCII without spaces: they travel in URLs, cookies and channel names."""
    return 0 < len(user_id) <= MAX_ID_LENGTH and all(c.isascii() and (c.isalnum() or c in "-_.@") for c in user_id)


def clean_name(raw: str | None) -> str:
    """A person's name under the one text rule (app.chat.text: something visible, no control or bidi control
    characters, a single line) and 1–MAX_NAME_LENGTH characters; InvalidInput saying what is wrong."""
    return clean_text(raw, _("名称"), MAX_NAME_LENGTH, multiline=False)


def upsert_user(session: Session, user_id: str, name: str, role: str) -> User:
    """Creates or updates a person (flushed). InvalidInput for a bad id, role or name; Forbidden for a reserved
    id."""
    if not valid_user_id(user_id):
        raise InvalidInput(f"invalid user id: {user_id!r}")
    refuse_reserved(user_id)
    if role not in ROLES:
        raise InvalidInput(f"invalid role: {role!r}")
    name = clean_name(name)
    user = session.get(User, user_id)
    if user is None:
        user = User(id=user_id, name=name, role=role)
        session.add(user)
    else:
        user.name, user.role = name, role
    session.flush()
    return user
