"""Cards in real headless Chromium: a product card sent by the marketplace appears live on both sides, its picture
served by Kefu (the browsers never ask the image host); the product a buyer asks about (正在咨询) is sent with one
click, once: gone in the buyer's other tab and after a reload, never shown to the merchant."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from app.chat.links import LinkIdentity, make_token
from app.db.engine import make_engine, make_sessionmaker
from app.db.models import Message
from tests.api_support import new_key
from tests.file_samples import image_bytes
from tests.image_host import ImageHost
from tests.support import TEST_SECRET, ServerProcess, free_port, server_env
from tests.test_cards_api import product

pytestmark = pytest.mark.browser
ASKED = {"title": "板蓝根颗粒 20 袋", "price_fen": 1550, "url": "https://shop.example.com/p/2002"}


@pytest.fixture
def host() -> Iterator[ImageHost]:
    images = ImageHost()
    yield images
    images.close()


@pytest.fixture
def card_server(browser, sqlite_url: str, tmp_path: Path) -> Iterator[ServerProcess]:  # type: ignore[no-untyped-def]
    """`kefu serve` that may fetch card pictures from 127.0.0.1 (the test's image host)."""
    env = server_env(sqlite_url, tmp_path, KEFU_CARD_IMAGE_PRIVATE_TARGETS="1")
    process = ServerProcess(env, free_port()).start()
    yield process
    for context in browser.contexts:
        context.close()
    process.stop()


def open_chat(context, url: str):  # type: ignore[no-untyped-def]
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector('[data-testid="connection"][data-state="open"]')
    return page


def stored(database_url: str) -> list[tuple[str, str, str]]:
    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine)() as session:
            return [(m.kind, m.sender_id, m.body) for m in session.scalars(select(Message).order_by(Message.id))]
    finally:
        engine.dispose()


def test_a_card_appears_live_on_both_sides_with_its_picture_served_by_kefu(  # type: ignore[no-untyped-def]
        browser, card_server: ServerProcess, sqlite_url: str, host: ImageHost) -> None:
    picture = host.serve("/p/1001.png", image_bytes("PNG", (640, 480)))
    buyer = open_chat(browser.new_context(locale="zh-CN"), f"{card_server.url}/chat?user_id=b1&target=m1")
    merchant = open_chat(browser.new_context(locale="zh-CN"), f"{card_server.url}/chat?user_id=m1&target=b1")
    asked: list[str] = []
    for page in (buyer, merchant):
        page.on("request", lambda request: asked.append(request.url))
    cid = int(buyer.locator('[data-testid="thread"]').get_attribute("data-conversation-id") or 0)

    auth = {"Authorization": f"Bearer {new_key(sqlite_url)}"}
    with httpx.Client(base_url=card_server.url, timeout=10, headers=auth) as backend:
        sent = backend.post(f"/api/v1/conversations/{cid}/cards", json=product(sender_id="m1", image_url=picture))
    assert sent.status_code == 201, sent.text

    for page in (buyer, merchant):
        card = page.locator('[data-testid="message"][data-kind="product"] [data-testid="card"]')
        card.wait_for()
        assert card.locator('[data-testid="card-price"]').inner_text() == "¥35.80"
        image = card.locator('[data-testid="card-image"]')
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
        assert image.get_attribute("src") == f"/cards/{sent.json()['id']}/image"
        link = card.locator('[data-testid="card-title"]')
        assert (link.get_attribute("target"), link.get_attribute("rel")) == ("_blank", "noopener noreferrer nofollow")
    assert host.hits["/p/1001.png"] == 1
    assert not [url for url in asked if url.startswith(host.url("/"))]  # the browsers never asked the image host


def test_the_product_asked_about_is_sent_once_with_one_click(  # type: ignore[no-untyped-def]
        browser, card_server: ServerProcess, sqlite_url: str) -> None:
    token = make_token(TEST_SECRET, LinkIdentity("b1", "保安堂药房", "buyer", "m1", ASKED))
    buyers = browser.new_context(locale="zh-CN")
    first = open_chat(buyers, f"{card_server.url}/chat?token={token}")
    second = open_chat(buyers, first.url)  # the buyer's other tab, on the same conversation
    merchant = open_chat(browser.new_context(locale="zh-CN"), f"{card_server.url}/chat?user_id=m1&target=b1")
    for tab in (first, second):
        offer = tab.locator('[data-testid="consulting-card"]')
        assert offer.locator('[data-testid="consulting-title"]').inner_text() == "板蓝根颗粒 20 袋"
    assert merchant.locator('[data-testid="consulting-card"]').count() == 0

    first.locator('[data-testid="consulting-send"]').click()
    for tab in (first, second, merchant):
        tab.locator('[data-testid="message"][data-kind="product"][data-sender-id="b1"]',
                    has_text="板蓝根颗粒 20 袋").wait_for()
    for tab in (first, second):
        tab.locator('[data-testid="consulting-card"]').wait_for(state="detached")
    first.reload()
    first.wait_for_selector('[data-testid="connection"][data-state="open"]')
    assert first.locator('[data-testid="consulting-card"]').count() == 0
    assert first.locator('[data-testid="message"][data-kind="product"]').count() == 1
    assert stored(sqlite_url) == [("product", "b1", "板蓝根颗粒 20 袋")]
