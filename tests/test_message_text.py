"""What a message's text looks like on the page, over HTTP through the real app on SQLite and MariaDB: web addresses
(http://, https:// and bare www.) become links that open in a new tab and tell the other site nothing; nothing else
becomes a link, and the text stays text whatever is typed (property-based, hostile text included); a message of one to
three emoji is marked to be shown large."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from app.main import create_app
from tests.conftest import make_settings
from tests.dom import Element, parse
from tests.support import open_conversation_id, sign_in

REL = "noopener noreferrer nofollow"


@pytest.fixture
def client(database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The app with a rate limit far above what the examples send, b1 signed in with m1's conversation open."""
    app = create_app(make_settings(database_url, tmp_path, message_limit=(100_000, 10.0)))
    with TestClient(app, base_url="http://127.0.0.1") as test_client:
        token = sign_in(test_client, "b1", target="m1")
        test_client.headers["X-CSRFToken"] = token
        test_client.cid = open_conversation_id(test_client, "m1")  # type: ignore[attr-defined]
        yield test_client


def bubble_of(client: TestClient, text: str) -> tuple[Element, Element]:
    """Sends `text`; the message's bubble as answered to the send, and as read back from the conversation's page."""
    response = client.post(f"/chat/c/{client.cid}/messages", data={"body": text})  # type: ignore[attr-defined]
    assert response.status_code == 201, response.text
    message = parse(response.text).one(testid="message")
    page = parse(client.get(f"/chat/c/{client.cid}").text)  # type: ignore[attr-defined]
    again = page.one(testid="message", data_message_id=message.get("data-message-id"))
    return message.one(cls="msg-bubble"), again.one(cls="msg-bubble")


def links_of(bubble: Element) -> list[tuple[str | None, str]]:
    """(href, text) of each link in a bubble, checking each opens in a new tab and tells the target nothing."""
    found = []
    for link in bubble.find_all("a"):
        assert link.testid == "link"
        assert link.get("rel") == REL and link.get("target") == "_blank"
        found.append((link.get("href"), link.text()))
    return found


@pytest.mark.parametrize(("text", "expected"), [
    ("订单详情见 https://shop.example.com/order/12345?from=chat#top 谢谢",
     [("https://shop.example.com/order/12345?from=chat#top", "https://shop.example.com/order/12345?from=chat#top")]),
    ("旧地址 http://example.org/a/b", [("http://example.org/a/b", "http://example.org/a/b")]),
    ("看这个https://x.cn/p/9，谢谢", [("https://x.cn/p/9", "https://x.cn/p/9")]),  # Chinese around, no spaces
    ("官网www.taobao.com。", [("https://www.taobao.com", "www.taobao.com")]),
    ("两个：https://a.example.com，www.b.example.com", [("https://a.example.com", "https://a.example.com"),
                                                      ("https://www.b.example.com", "www.b.example.com")]),
    ("(https://example.com/x)", [("https://example.com/x", "https://example.com/x")]),
])
def test_web_addresses_become_links_that_open_in_a_new_tab(client: TestClient, text: str,
                                                           expected: list[tuple[str, str]]) -> None:
    for bubble in bubble_of(client, text):
        assert links_of(bubble) == expected
        assert bubble.text() == " ".join(text.split())  # the words around the links are all still there


@pytest.mark.parametrize("text", [
    "javascript:alert(document.cookie)",
    "JaVaScRiPt:alert(1)",
    " javascript&colon;alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "file:///etc/passwd",
    "ftp://files.example.com/a.zip",
    "mailto:boss@example.com",
    "写信给 boss@example.com",
    "//evil.example.com/x",
    "example.com 和 taobao.com",  # a bare domain without www. is just text
    "版本 1.2.3 价格 12.50 元",
    "<a href=\"https://evil.example.com\">点我</a>",
    "https://a.com\u202e/moc.live",  # shown reversed, it would read as another address
    "www.bank\u2067.example\u2069.com",
])
def test_nothing_else_becomes_a_link(client: TestClient, text: str) -> None:
    for bubble in bubble_of(client, text):
        if text.startswith("<a href"):  # the markup is shown as text; only the address inside it is a link
            assert links_of(bubble) == [("https://evil.example.com", "https://evil.example.com")]
        else:
            assert links_of(bubble) == []
        assert [e.tag for e in bubble.iter() if e is not bubble and e.tag != "a"] == []
        assert bubble.text() == " ".join(text.split())


def test_quotes_and_angle_brackets_in_an_address_stay_inside_it(client: TestClient) -> None:
    text = 'https://x.example.com/a?q="><script>alert(1)</script>&b=\'1\' onmouseover=alert(1)'
    for bubble in bubble_of(client, text):
        assert [e.tag for e in bubble.iter() if e is not bubble] == ["a"]
        [(href, _)] = links_of(bubble)
        assert href is not None and href.startswith("https://x.example.com/a?q=")
        assert not re.search(r"[\"'<> ]", href)
        assert bubble.text() == text


# Text built from pieces people paste, around and inside addresses: markup, quotes, schemes, Chinese, emoji, spaces.
PIECES = st.sampled_from([
    "https://", "http://", "www.", "javascript:", "data:", "//", "example.com", "/路径", "?q=", "&", "#", "\"", "'",
    "<", ">", "<script>", "</a>", "<a href=", "onerror=", "=", "(", ")", "，", "。", " ", "\n", "发货", "😀", "🇨🇳",
    "%22", "&amp;", "\\", "`", "例子.中国", ".", ":", "@", "mailto:", "\u202e",
])
PASTED = st.lists(PIECES | st.text(max_size=3, alphabet=st.characters(categories=("L", "N", "P", "S"))),
                  min_size=1, max_size=25).map("".join).filter(lambda s: s.strip() != "")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=PASTED)
def test_whatever_is_pasted_the_text_stays_text_and_links_are_only_web_links(client: TestClient, text: str) -> None:
    response = client.post(f"/chat/c/{client.cid}/messages", data={"body": text})  # type: ignore[attr-defined]
    assert response.status_code in (201, 422), response.text  # 422: nothing visible, refused (another test's matter)
    if response.status_code == 422:
        return
    bubble = parse(response.text).one(testid="message").one(cls="msg-bubble")
    assert [e.tag for e in bubble.iter() if e is not bubble and e.tag != "a"] == []  # no markup but links
    for href, shown in links_of(bubble):
        assert href is not None and re.match(r"https?://", href)
        assert href.endswith(shown) and shown in text  # the link goes where its text says
    expected = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    assert bubble.text() == " ".join(expected.split())


@pytest.mark.parametrize(("text", "large"), [
    ("😀", True),
    ("👍 👍 👍", True),
    ("🇨🇳👨‍👩‍👧❤️", True),  # a flag, a family and a red heart are one emoji each
    ("👍🏽", True),
    ("😀😀😀😀", False),  # four is a sentence
    ("好的👍", False),
    ("1", False),
    ("©", False),  # a symbol drawn as text
])
def test_a_message_of_one_to_three_emoji_is_shown_large(client: TestClient, text: str, large: bool) -> None:
    for bubble in bubble_of(client, text):
        assert (bubble.get("data-emoji-only") == "true") is large
        assert bubble.text() == " ".join(text.split())
