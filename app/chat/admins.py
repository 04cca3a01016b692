"""Admin accounts: created by ops with `kefu admin`, signed in with argon2-hashed passwords, throttled."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.chat.errors import InvalidInput, NotFound
from app.chat.people import refuse_reserved, valid_user_id
from app.chat.sessions import end_all_sessions, session_key
from app.db.models import AdminAccount, SignInFailure, SignInSession, SignInThrottleKey, User, utcnow
from app.i18n import gettext as _

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)

hasher = PasswordHasher()
@cache
def _dummy_hash() -> str:
    """A real hash to verify against when the username is unknown, so both cases take the same time."""
    return hasher.hash("kefu-no-such-admin")


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(_("密码至少需要 {n} 个字符。").format(n=MIN_PASSWORD_LENGTH))
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(_("密码太长。"))


def _check_username(username: str) -> str:
    username = username.strip()
    if not valid_user_id(username):
        raise InvalidInput(_("用户名只能包含字母、数字和 - _ . @，最长 64 个字符。"))
    return username


def get_account(session: Session, user_id: str) -> AdminAccount:
    """The admin account of `user_id`; NotFound when there is none."""
    account = session.get(AdminAccount, user_id)
    if account is None:
        raise NotFound(_("没有这个管理员：{user_id}").format(user_id=user_id))
    return account


def create_admin(session: Session, user_id: str, username: str, password: str) -> AdminAccount:
    """A new admin (flushed), password hashed with argon2. InvalidInput for a bad id, username or a password
    shorter than the minimum; Forbidden for a reserved id."""
    if not valid_user_id(user_id):
        raise InvalidInput(_("用户 ID 无效：{user_id}").format(user_id=user_id))
    refuse_reserved(user_id)
    username = _check_username(username)
    _check_password(password)
    if session.get(User, user_id) is not None:
        raise InvalidInput(_("用户 ID 已被占用：{user_id}").format(user_id=user_id))
    if session.scalar(select(AdminAccount).where(AdminAccount.username == username)) is not None:
        raise InvalidInput(_("用户名已被占用：{username}").format(username=username))
    session.add(User(id=user_id, name=username, role="admin"))
    session.flush()
    account = AdminAccount(user_id=user_id, username=username, password_hash=hasher.hash(password))
    session.add(account)
    session.flush()
    return account


def change_password(session: Session, user_id: str, password: str) -> list[str]:
    """Sets a new password and ends every session of this admin (flushed, not committed). Returns the ended
    sessions' keys, for closing their open streams. NotFound, InvalidInput (a short or long password)."""
    account = get_account(session, user_id)
    _check_password(password)
    account.password_hash = hasher.hash(password)
    account.password_changed_at = utcnow()
    session.flush()
    return end_all_sessions(session, user_id)


def set_disabled(session: Session, user_id: str, disabled: bool) -> list[str]:
    """Disables (or enables) an admin; disabling ends every session of theirs, and enabling brings none back.
    Returns the ended sessions' keys. NotFound."""
    account = get_account(session, user_id)
    account.disabled = disabled
    session.flush()
    return end_all_sessions(session, user_id) if disabled else []


def admin_of_session(session: Session, token: str, user_id: str) -> AdminAccount | None:
    """The enabled admin `user_id` whose live session this token is, or None. One query (a primary-key lookup
    joined to the account)."""
    row = session.execute(
        select(AdminAccount, SignInSession.expires_at)
        .join(SignInSession, SignInSession.user_id == AdminAccount.user_id)
        .where(SignInSession.id == session_key(token), AdminAccount.user_id == user_id)
    ).one_or_none()
    if row is None or row.expires_at <= utcnow() or row.AdminAccount.disabled:
        return None
    return row.AdminAccount


def list_admins(session: Session) -> list[AdminAccount]:
    """Every admin account, by user id."""
    return list(session.scalars(select(AdminAccount).order_by(AdminAccount.user_id)))


class Throttled(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


def failure_keys(username: str, client_address: str, device: str | None = None) -> list[str]:
    """The throttling keys of a sign-in attempt: its username (case-folded), or, from a browser that signed in as
    that admin before (a device cookie, as OWASP's "Blocking Brute Force Attacks" suggests), that device, so that
    someone else's failures cannot lock the admin out of their own browser; and its client address."""
    first = f"device:{device[:100]}" if device else f"user:{username.strip().lower()[:150]}"
    return [first, f"addr:{client_address[:150]}"]


def check_throttle(session: Session, keys: list[str], now: datetime | None = None) -> None:
    """Throttled(seconds) when any key has MAX_FAILURES failures within the window."""
    now = now or utcnow()
    since = now - FAILURE_WINDOW
    rows = session.execute(
        select(SignInFailure.key, func.count(), func.min(SignInFailure.created_at))
        .where(SignInFailure.key.in_(keys), SignInFailure.created_at > since)
        .group_by(SignInFailure.key)
    ).all()
    waits = [
        int((oldest + FAILURE_WINDOW - now).total_seconds()) + 1
        for _key, count, oldest in rows
        if count >= MAX_FAILURES
    ]
    if waits:
        raise Throttled(retry_after=max(1, max(waits)))


def authenticate(session: Session, username: str, password: str, client_address: str,
                 device: str | None = None) -> AdminAccount | None:
    """The admin for these credentials, or None (counted as a failure). Raises Throttled when a key of the attempt
    (failure_keys) has had MAX_FAILURES failures in FAILURE_WINDOW. Counting and checking are one step: the keys'
    rows are locked, the attempt is checked and recorded as a failure, and the turn ends (commit) before the
    password is verified; a success then takes back what it recorded (and the username's or device's failures)."""
    keys = failure_keys(username, client_address, device)
    _take_turn(session, keys)
    try:
        check_throttle(session, keys)
    except Throttled:
        session.rollback()
        raise
    now = utcnow()
    attempt = [SignInFailure(key=key, created_at=now) for key in keys]
    session.add_all(attempt)
    session.commit()
    account = session.scalar(select(AdminAccount).where(AdminAccount.username == username.strip()))
    try:
        hasher.verify(account.password_hash if account else _dummy_hash(), password[:MAX_PASSWORD_LENGTH])
        ok = account is not None and not account.disabled
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok:
        _forget_old_failures(session, now)
        return None
    assert account is not None
    if hasher.check_needs_rehash(account.password_hash):
        account.password_hash = hasher.hash(password)
    session.execute(delete(SignInFailure).where(SignInFailure.key == keys[0]))
    session.execute(delete(SignInFailure).where(SignInFailure.id == attempt[1].id))
    session.flush()
    return account


def _take_turn(session: Session, keys: list[str]) -> None:
    """Locks the keys' rows (made first, in a commit of their own, when missing), in key order: no two attempts
    on one key are counted at once, and attempts on two keys never wait for each other in a circle."""
    missing = set(keys) - set(session.scalars(select(SignInThrottleKey.key).where(SignInThrottleKey.key.in_(keys))))
    for key in sorted(missing):
        try:
            with session.begin_nested():
                session.add(SignInThrottleKey(key=key))
        except IntegrityError:  # made by another attempt at the same moment
            pass
    session.commit()
    # An UPDATE that changes nothing takes the rows' write locks (MariaDB, in key order) and SQLite's write lock
    # alike, where SELECT … FOR UPDATE would lock nothing on SQLite.
    session.execute(update(SignInThrottleKey).where(SignInThrottleKey.key.in_(keys))
                    .values(key=SignInThrottleKey.key).execution_options(synchronize_session=False))


def _forget_old_failures(session: Session, now: datetime) -> None:
    """Failures older than four windows, found by a plain read and deleted by id (a range DELETE would lock gaps
    that other attempts insert into, and deadlock them on MariaDB); at most 500 a time."""
    old = list(session.scalars(select(SignInFailure.id).where(SignInFailure.created_at < now - FAILURE_WINDOW * 4)
                               .limit(500)))
    if old:
        session.execute(delete(SignInFailure).where(SignInFailure.id.in_(old)))
    session.flush()
