"""An admin signs in at /login and out at /logout, on SQLite and MariaDB, through the real app.

What admins and ops rely on: the right password opens the monitor and nothing else does; a wrong password and an
unknown username look the same; the session cookie is signed, HttpOnly, SameSite=Lax, and lasts seven days only
with "remember me"; a new password or a disabled account ends existing sessions; guessing is throttled per
username and per client address; hashes made with older argon2 parameters are upgraded at the next sign-in.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from argon2 import PasswordHasher
from litestar.testing import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.chat import admins
from app.db.engine import make_engine, make_sessionmaker
from app.db.models import AdminAccount, SignInFailure, User, utcnow
from tests.admin_support import (
    FAST_HASHER,
    PASSWORD,
    login_location,
    make_admin,
    post_login,
    set_cookie,
    sign_in_admin,
    use_fast_hashing,
)
from tests.dom import parse
from tests.support import ServerProcess, csrf_of, free_port, other_browser, server_env

ADMIN_COOKIE = "kefu_admin"
SEVEN_DAYS = 7 * 24 * 3600
THROTTLED_TEXT = "登录失败次数过多"
WRONG_TEXT = "用户名或密码错误"


@pytest.fixture(autouse=True)
def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fast_hashing(monkeypatch)


@pytest.fixture
def admin(db: Session) -> str:
    make_admin(db)
    return "a1"


def login_error(response) -> str:  # type: ignore[no-untyped-def]
    return parse(response.text).one(testid="login-error").text()


def is_signed_in(client: TestClient) -> bool:
    response = client.get("/admin", follow_redirects=False)
    if response.status_code == 200:
        assert parse(response.text).one(testid="monitor")
        return True
    assert login_location(response) == "/admin"
    return False


def stored_hash(db: Session, user_id: str = "a1") -> str:
    db.rollback()  # a fresh snapshot (MariaDB's repeatable read), nothing cached
    account = db.get(AdminAccount, user_id)
    assert account is not None
    return account.password_hash


def test_no_admin_exists_until_ops_create_one(app_client: TestClient, db: Session) -> None:
    assert db.scalar(select(func.count()).select_from(AdminAccount)) == 0
    assert db.scalar(select(func.count()).select_from(User).where(User.role == "admin")) == 0
    for username, password in (("admin", "admin"), ("admin", "password"), ("root", "root"), ("admin", "")):
        response = post_login(app_client, username, password)
        assert response.status_code == 401, (username, password)
        assert set_cookie(response, ADMIN_COOKIE) is None
    assert not is_signed_in(app_client)


def test_the_right_password_opens_the_monitor(app_client: TestClient, admin: str) -> None:
    assert not is_signed_in(app_client)
    response = post_login(app_client, "ops", PASSWORD)
    assert response.status_code == 303
    assert response.headers["location"] == "/admin"
    page = parse(app_client.get("/admin").text)
    assert page.one(testid="monitor")
    assert "ops" in page.one(cls="admin-name").text()
    # Signed in already: the login page sends the admin on.
    again = app_client.get("/login", follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == "/admin"


def test_sign_in_returns_to_the_page_asked_for_and_never_off_site(app_client: TestClient, admin: str) -> None:
    asked = app_client.get("/admin/stats", follow_redirects=False)
    assert login_location(asked) == "/admin/stats"
    form = parse(app_client.get(asked.headers["location"]).text).one(tag="input", name="next")
    assert form.get("value") == "/admin/stats"
    response = post_login(app_client, "ops", PASSWORD, next_url="/admin/stats")
    assert response.headers["location"] == "/admin/stats"

    with other_browser(app_client) as browser:
        for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"):
            browser.cookies.clear()
            response = post_login(browser, "ops", PASSWORD, next_url=target)
            assert response.status_code == 303
            assert response.headers["location"] == "/admin", target


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(app_client: TestClient, db: Session,
                                                                  admin: str) -> None:
    make_admin(db, "a2", "off-duty")
    admins.set_disabled(db, "a2", True)
    db.commit()
    answers = []
    # (four attempts: a fifth failure from this address would be throttled)
    for username, password in (("ops", "wrong-password"), ("nobody", PASSWORD), ("off-duty", PASSWORD),
                               ("ops", PASSWORD + " ")):
        response = post_login(app_client, username, password)
        assert set_cookie(response, ADMIN_COOKIE) is None
        answers.append((response.status_code, login_error(response)))
        assert not is_signed_in(app_client)
    assert len(set(answers)) == 1, answers
    status, text = answers[0]
    assert status == 401
    assert WRONG_TEXT in text


def test_the_session_cookie_is_http_only_same_site_lax_and_lasts_seven_days_only_when_remembered(
        app_client: TestClient, admin: str) -> None:
    remembered = post_login(app_client, "ops", PASSWORD, remember=True)
    assert remembered.status_code == 303
    with other_browser(app_client) as other:
        for_now = post_login(other, "ops", PASSWORD)
        assert for_now.status_code == 303
        assert is_signed_in(other)
    assert is_signed_in(app_client)
    for response, max_age in ((remembered, str(SEVEN_DAYS)), (for_now, "")):
        cookie = set_cookie(response, ADMIN_COOKIE)
        assert cookie is not None
        assert cookie["httponly"] is True
        assert cookie["samesite"].lower() == "lax"
        assert cookie["path"] == "/"
        assert cookie["max-age"] == max_age
        assert cookie["expires"] == ""  # without "remember me" the browser drops it when it closes


def test_the_session_cookie_is_signed(app_client: TestClient, admin: str) -> None:
    post_login(app_client, "ops", PASSWORD)
    value = app_client.cookies[ADMIN_COOKIE]
    payload = value.partition(".")[0]
    head, _, signature = value.rpartition(".")  # change the signature's first character: all its bits count
    tampered = f"{head}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    with other_browser(app_client) as browser:
        browser.cookies.set(ADMIN_COOKIE, value)
        assert is_signed_in(browser)  # the genuine cookie, carried to another browser, works
        for forged in (tampered, payload, "a1", '{"a": "a1", "v": 1, "r": 1}'):
            browser.cookies.clear()
            browser.cookies.set(ADMIN_COOKIE, forged)
            assert not is_signed_in(browser), forged


def test_the_login_form_carries_the_csrf_token_and_login_without_it_is_refused(app_client: TestClient,
                                                                               admin: str) -> None:
    html = app_client.get("/login").text
    form = parse(html).one(testid="login-form")
    assert form.one(tag="input", name="_csrf_token").get("value") == csrf_of(html)
    assert form.one(tag="input", name="password").get("type") == "password"
    assert form.one(tag="input", name="remember").get("type") == "checkbox"
    response = app_client.post("/login", data={"username": "ops", "password": PASSWORD}, follow_redirects=False)
    assert response.status_code == 403
    assert set_cookie(response, ADMIN_COOKIE) is None
    assert not is_signed_in(app_client)


def test_logout_signs_out(app_client: TestClient, admin: str) -> None:
    token = sign_in_admin(app_client, remember=True)
    refused = app_client.post("/logout", follow_redirects=False)  # without the CSRF token
    assert refused.status_code == 403
    assert is_signed_in(app_client)

    response = app_client.post("/logout", data={"_csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    cleared = set_cookie(response, ADMIN_COOKIE)
    assert cleared is not None and cleared.value in ("", '""')
    assert cleared["max-age"] == "0"  # the browser forgets it at once
    assert not is_signed_in(app_client)


def test_a_new_password_ends_every_existing_session(app_client: TestClient, db: Session, admin: str) -> None:
    sign_in_admin(app_client, remember=True)
    with other_browser(app_client) as other:
        sign_in_admin(other)
        admins.change_password(db, "a1", "a-brand-new-one")
        db.commit()
        assert not is_signed_in(app_client)
        assert not is_signed_in(other)
    assert post_login(app_client, "ops", PASSWORD).status_code == 401
    assert post_login(app_client, "ops", "a-brand-new-one").status_code == 303
    assert is_signed_in(app_client)


def test_disabling_an_admin_ends_their_sessions_and_refuses_sign_in(app_client: TestClient, db: Session,
                                                                    admin: str) -> None:
    sign_in_admin(app_client, remember=True)
    old_cookie = app_client.cookies[ADMIN_COOKIE]
    with other_browser(app_client) as kept:
        kept.cookies.set(ADMIN_COOKIE, old_cookie)
        assert is_signed_in(kept)  # a copy of the session works in another browser…
    admins.set_disabled(db, "a1", True)
    db.commit()
    assert not is_signed_in(app_client)
    refused = post_login(app_client, "ops", PASSWORD)
    assert refused.status_code == 401
    assert WRONG_TEXT in login_error(refused)

    admins.set_disabled(db, "a1", False)
    db.commit()
    with other_browser(app_client) as kept:
        kept.cookies.set(ADMIN_COOKIE, old_cookie)
        assert not is_signed_in(kept)  # …but enabling again does not bring the old session back
    assert post_login(app_client, "ops", PASSWORD).status_code == 303
    assert is_signed_in(app_client)


def assert_throttled(response, max_wait: int = 15 * 60) -> int:  # type: ignore[no-untyped-def]
    assert response.status_code == 429, response.text
    wait = int(response.headers["retry-after"])
    assert 0 < wait <= max_wait + 1
    assert THROTTLED_TEXT in login_error(response)
    assert set_cookie(response, ADMIN_COOKIE) is None
    return wait


@pytest.mark.parametrize("username", ["ops", "nobody"], ids=["existing-user", "unknown-user"])
def test_five_failures_throttle_a_username_even_for_the_right_password(app_client: TestClient, admin: str,
                                                                       username: str) -> None:
    for attempt in range(5):
        response = post_login(app_client, username, f"guess-{attempt}")
        assert response.status_code == 401, attempt
    wait = assert_throttled(post_login(app_client, username, PASSWORD))
    assert wait > 14 * 60  # the failures were just now: the full window is ahead
    assert "15" in login_error(post_login(app_client, username, PASSWORD))  # "…try again in 15 minutes"
    assert not is_signed_in(app_client)


def test_failures_from_one_address_throttle_every_username_from_it(app_client: TestClient, admin: str) -> None:
    for n in range(5):
        assert post_login(app_client, f"guess{n}", "password?").status_code == 401
    assert_throttled(post_login(app_client, "ops", PASSWORD))
    assert not is_signed_in(app_client)


def test_failures_for_a_username_count_from_every_address(db: Session, admin: str) -> None:
    make_admin(db, "a2", "other")
    for n in range(5):
        assert admins.authenticate(db, "ops", "wrong-password", f"10.0.0.{n}") is None
        db.commit()
    with pytest.raises(admins.Throttled):
        admins.authenticate(db, "ops", PASSWORD, "10.0.1.1")
    db.rollback()
    other = admins.authenticate(db, "other", PASSWORD, "10.0.1.1")  # someone else from elsewhere is not held up
    assert other is not None and other.user_id == "a2"


def test_a_hash_with_old_parameters_is_upgraded_at_the_next_sign_in(app_client: TestClient, db: Session,
                                                                    admin: str) -> None:
    old_hasher = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    old_hash = old_hasher.hash(PASSWORD)
    assert FAST_HASHER.check_needs_rehash(old_hash)  # the parameters differ from the app's
    db.execute(update(AdminAccount).where(AdminAccount.user_id == "a1").values(password_hash=old_hash))
    db.commit()

    assert post_login(app_client, "ops", "wrong-password").status_code == 401
    assert stored_hash(db) == old_hash  # a failed attempt changes nothing

    assert post_login(app_client, "ops", PASSWORD).status_code == 303
    new_hash = stored_hash(db)
    assert new_hash != old_hash
    assert new_hash.startswith("$argon2id$")
    assert not FAST_HASHER.check_needs_rehash(new_hash)
    assert FAST_HASHER.verify(new_hash, PASSWORD)

    app_client.cookies.clear()
    assert post_login(app_client, "ops", PASSWORD).status_code == 303  # the new hash works
    assert stored_hash(db) == new_hash  # and is not redone at every sign-in


def test_the_throttle_counts_failures_in_the_last_fifteen_minutes(app_client: TestClient, db: Session,
                                                                  admin: str) -> None:
    for n in range(4):
        assert post_login(app_client, "ops", f"guess-{n}").status_code == 401
    assert post_login(app_client, "ops", PASSWORD).status_code == 303  # four failures are not enough
    app_client.cookies.clear()
    # Five failures are enough, whether or not the success wiped the earlier ones: the sixth try is throttled.
    statuses = [post_login(app_client, "ops", f"again-{n}").status_code for n in range(6)]
    assert statuses[0] == 401 and statuses[-1] == 429, statuses
    assert_throttled(post_login(app_client, "ops", PASSWORD))

    def failures_age(minutes: float) -> None:
        db.execute(update(SignInFailure).values(created_at=utcnow() - timedelta(minutes=minutes)))
        db.commit()

    failures_age(14)
    wait = assert_throttled(post_login(app_client, "ops", PASSWORD))
    assert 30 <= wait <= 61
    assert "1 分钟" in login_error(post_login(app_client, "ops", PASSWORD))
    failures_age(15.1)
    assert post_login(app_client, "ops", PASSWORD).status_code == 303
    assert is_signed_in(app_client)


def test_forty_wrong_passwords_at_once_check_five_and_answer_the_rest_429(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Over real sockets, all at the same moment: the count and the check are one step (before, 21 of 40 were checked
    and MariaDB answered some with a deadlock 500)."""
    engine = make_engine(database_url)
    with make_sessionmaker(engine)() as session:
        admins.create_admin(session, "a1", "ops", PASSWORD)
        session.commit()
    engine.dispose()
    server = ServerProcess(server_env(database_url, tmp_path), free_port()).start()

    def attempt(n: int) -> int:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            return post_login(client, "ops", f"guess-{n}").status_code

    try:
        with ThreadPoolExecutor(20) as pool:
            statuses = sorted(pool.map(attempt, range(40)))
    finally:
        server.stop()
    assert statuses == [401] * 5 + [429] * 35


def test_someone_elses_failures_do_not_lock_the_admin_out_of_their_own_browser(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Behind a trusted proxy, from two addresses: an attacker's five failures for the username lock the username
    for browsers the admin never signed in from, not the admin's own (its device cookie, per OWASP)."""
    engine = make_engine(database_url)
    with make_sessionmaker(engine)() as session:
        admins.create_admin(session, "a1", "ops", PASSWORD)
        session.commit()
    engine.dispose()
    server = ServerProcess(server_env(database_url, tmp_path, KEFU_TRUSTED_PROXIES="127.0.0.1"), free_port()).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30, headers={"X-Forwarded-For": "198.51.100.7"}) as admin, \
                httpx.Client(base_url=server.url, timeout=30, headers={"X-Forwarded-For": "203.0.113.66"}) as spy, \
                httpx.Client(base_url=server.url, timeout=30, headers={"X-Forwarded-For": "192.0.2.10"}) as cafe:
            assert post_login(admin, "ops", PASSWORD).status_code == 303  # the admin's browser, remembered
            out = admin.post("/logout", data={"_csrf_token": csrf_of(admin.get("/admin").text)})
            assert out.status_code == 303 and "kefu_device" in admin.cookies  # signed out; the device cookie stays
            assert [post_login(spy, "ops", f"guess-{n}").status_code for n in range(6)] == [401] * 5 + [429]
            assert post_login(cafe, "ops", PASSWORD).status_code == 429  # a browser never used: the username waits
            assert post_login(admin, "ops", PASSWORD).status_code == 303  # the admin's own browser gets in
    finally:
        server.stop()
