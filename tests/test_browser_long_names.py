"""A long name without spaces ("LongShop_" and 91 more letters) never stretches a page past the window, at a desk
or on a phone: the chat, the admin monitor, statistics and the audit log."""

from __future__ import annotations

import pytest

from app.chat.people import upsert_user
from tests.admin_support import PASSWORD, make_admin
from tests.seeding import converse, say, with_session
from tests.support import ServerProcess, open_chat

pytestmark = pytest.mark.browser
LONG = "LongShop_" + "x" * 91  # 100 characters, no space to break at


def page_width(page) -> int:  # type: ignore[no-untyped-def]
    return page.evaluate("document.documentElement.scrollWidth")


@pytest.mark.parametrize("size", [(1280, 800), (375, 740)], ids=["desk", "phone"])
def test_a_long_name_never_makes_a_page_wider_than_the_window(  # type: ignore[no-untyped-def]
    browser, server: ServerProcess, sqlite_url: str, size: tuple[int, int]
) -> None:
    with with_session(sqlite_url) as db:
        upsert_user(db, "longshop", LONG, "merchant")
        db.commit()
        cid = converse(db, "b1", "longshop")
        say(db, cid, "longshop", "您好")
        say(db, cid, "b1", "在吗")
        make_admin(db, "a1", "ops")
    b1 = open_chat(browser, server, "user_id=b1&target=longshop", size)
    assert page_width(b1) <= size[0], "chat page"
    admin = b1.context.browser.new_context(viewport={"width": size[0], "height": size[1]}, locale="zh-CN").new_page()
    admin.goto(f"{server.url}/login")
    admin.fill("input[name=username]", "ops")
    admin.fill("input[name=password]", PASSWORD)
    admin.locator("form button[type=submit]").click()
    admin.wait_for_url("**/admin**")
    for path in ("/admin", f"/admin/c/{cid}", "/admin/stats", "/admin/audit"):
        admin.goto(f"{server.url}{path}")
        assert page_width(admin) <= size[0], path
