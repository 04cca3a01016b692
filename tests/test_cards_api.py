"""A marketplace's backend sends product and order cards into a conversation (POST /api/v1/conversations/{id}/cards),
on SQLite and MariaDB: strict validation naming the field, Idempotency-Key as for messages, participants or the system
only; the picture is fetched once by Kefu from a real local image host, checked like an upload, and served by Kefu to
those who may see the card; whatever goes wrong with it, the card is sent without it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from app.main import create_app
from tests.api_support import BASE_URL, Api, assert_error, new_key
from tests.conftest import make_settings
from tests.file_samples import gif_many_frames, image_bytes, png_bomb
from tests.image_host import ImageHost
from tests.support import sign_in

IMAGE_SECONDS = 1.5


@pytest.fixture
def host() -> Iterator[ImageHost]:
    images = ImageHost()
    yield images
    images.close()


def card_api(database_url: str, tmp_path: Path, **overrides: object) -> Iterator[Api]:
    settings = make_settings(database_url, tmp_path, card_image_seconds=IMAGE_SECONDS, **overrides)
    with TestClient(create_app(settings), base_url=BASE_URL) as client:
        yield Api(client, new_key(database_url), database_url)


@pytest.fixture
def cards(database_url: str, tmp_path: Path) -> Iterator[Api]:
    """The API, with card pictures allowed from 127.0.0.1 (the test's image host)."""
    yield from card_api(database_url, tmp_path, card_image_private_targets=True)


def product(**fields: Any) -> dict[str, Any]:
    return {"kind": "product", "title": "六味地黄丸 200 丸", "price_fen": 3580, "currency": "CNY",
            "url": "https://shop.example.com/p/1001", "sku": "1001-200"} | fields


def order(**fields: Any) -> dict[str, Any]:
    items = [{"title": "板蓝根颗粒", "quantity": 2, "price_fen": 1550, "image_url": None},
             {"title": "维生素C片", "quantity": 1, "price_fen": 2900, "image_url": None}]
    return {"kind": "order", "order_no": "DD20251128001", "status": "已发货", "total_fen": 6000, "currency": "CNY",
            "items": items, "url": "https://shop.example.com/o/DD20251128001"} | fields


def post_card(api: Api, cid: int, body: dict[str, Any], key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key else None
    return api.post(f"/api/v1/conversations/{cid}/cards", body, headers)


def test_a_product_card_is_stored_shown_and_its_picture_served_by_kefu(cards: Api, host: ImageHost) -> None:
    cid = cards.conversation("b1", "m1")
    picture = host.serve("/p/1001.png", image_bytes("PNG", (800, 600)))
    sent = post_card(cards, cid, product(image_url=picture, sender_id="m1"))
    assert sent.status_code == 201, sent.text
    message = sent.json()
    assert message["kind"] == "product" and message["sender_id"] == "m1" and message["body"] == "六味地黄丸 200 丸"
    assert message["card"] == product(image_url=picture) | {"image": f"/cards/{message['id']}/image"}
    assert cards.messages(cid)[-1] == message

    buyer = TestClient(cards.client.app, base_url=BASE_URL)
    sign_in(buyer, "b1", target="m1")
    page = buyer.get(f"/chat/c/{cid}").text
    assert 'data-kind="product"' in page and 'data-testid="card"' in page and "¥35.80" in page
    assert picture not in page  # the buyer's browser is never sent to the image host
    assert 'rel="noopener noreferrer nofollow"' in page and 'href="https://shop.example.com/p/1001"' in page
    served = buyer.get(message["card"]["image"])
    assert served.status_code == 200 and served.headers["content-type"] == "image/png"
    assert served.content.startswith(b"\x89PNG") and served.headers["cache-control"] == "no-store"

    again = post_card(cards, cid, product(image_url=picture, title="六味地黄丸 360 丸"))  # a system card
    assert again.status_code == 201 and again.json()["card"]["image"] == f"/cards/{again.json()['id']}/image"
    assert host.hits["/p/1001.png"] == 1  # one fetch for one URL
    assert again.json()["sender_id"] == "kefu-system"


def test_a_card_picture_is_only_for_those_who_may_see_the_card(cards: Api, host: ImageHost) -> None:
    cid = cards.conversation("b1", "m1")
    message = post_card(cards, cid, product(image_url=host.serve("/a.png", image_bytes("PNG")))).json()
    stranger = TestClient(cards.client.app, base_url=BASE_URL)
    assert stranger.get(message["card"]["image"]).status_code == 401
    sign_in(stranger, "b2", target="m1")
    assert stranger.get(message["card"]["image"]).status_code == 404
    assert stranger.get(f"/cards/{message['id'] + 1000}/image").status_code == 404


def test_an_order_card_shows_its_number_items_and_total(cards: Api) -> None:
    cid = cards.conversation("b1", "m1")
    sent = post_card(cards, cid, order(sender_id="b1"))
    assert sent.status_code == 201, sent.text
    assert sent.json()["kind"] == "order" and sent.json()["card"] == order() | {"image": None}
    seller = TestClient(cards.client.app, base_url=BASE_URL)
    sign_in(seller, "m1", target="b1")
    page = seller.get(f"/chat/c/{cid}").text
    assert 'data-kind="order"' in page and "订单号 DD20251128001" in page and "¥60.00" in page
    assert "板蓝根颗粒 × 2 · ¥15.50" in page and "已发货" in page
    assert "[订单] 订单号 DD20251128001" in seller.get("/chat").text  # the conversation's preview


@pytest.mark.parametrize(("body", "field"), [
    (product(title=""), "title"),
    (product(title="长" * 201), "title"),
    (product(price_fen=12.5), "price_fen"),
    (product(price_fen=True), "price_fen"),
    (product(price_fen=-1), "price_fen"),
    (product(price_fen=10_000_000_001), "price_fen"),
    (product(url="javascript:alert(1)"), "url"),
    (product(url="https://user:pw@shop.example.com/p"), "url"),
    (product(image_url="ftp://img.example.com/a.png"), "image_url"),
    (product(currency="JPY"), "currency"),
    (product(currency="ABC"), "currency"),
    (product(sku="x" * 65), "sku"),
    (product(colour="red"), "colour"),
    ({"kind": "coupon"}, "kind"),
    (order(order_no="DD 1"), "order_no"),
    (order(items=[]), "items"),
    (order(items=[{"title": "a", "quantity": 1, "price_fen": 1}] * 51), "items"),
    (order(items=[{"title": "a", "quantity": 1, "price_fen": 1}, {"title": "b", "quantity": 0, "price_fen": 1}]),
     "items[1].quantity"),
    (order(items=[{"title": "a", "quantity": 1, "price_fen": 1}] * 2 + [{"title": "c", "quantity": 1,
                                                                        "price_fen": "12"}]), "items[2].price_fen"),
    (order(items=[{"title": "a", "quantity": 1, "price_fen": 1, "image_url": "data:image/png;base64,AA"}]),
     "items[0].image_url"),
])
def test_a_card_not_accepted_is_refused_naming_the_field_and_nothing_is_stored(cards: Api, body: dict[str, Any],
                                                                               field: str) -> None:
    cid = cards.conversation("b1", "m1")
    assert_error(post_card(cards, cid, body | {"sender_id": "m1"}), 422, "invalid", field)
    assert cards.messages(cid) == []


def test_only_participants_or_the_system_send_cards_to_a_conversation_that_exists(cards: Api, host: ImageHost) -> None:
    cid = cards.conversation("b1", "m1")
    picture = host.serve("/x.png", image_bytes("PNG"))
    assert_error(post_card(cards, cid, product(sender_id="b2", image_url=picture)), 403, "forbidden")
    assert_error(post_card(cards, cid + 1000, product(image_url=picture)), 404, "not_found")
    assert host.hits["/x.png"] == 0  # refused before anything was fetched
    other = cards.conversation("b2", "m1")
    assert_error(post_card(cards, other, product(sender_id="b1")), 403, "forbidden")
    unauthenticated = cards.client.post(f"/api/v1/conversations/{cid}/cards", json=product())
    assert unauthenticated.status_code == 401
    assert cards.messages(cid) == [] and cards.messages(other) == []


def test_a_retried_card_with_the_same_idempotency_key_is_stored_once(cards: Api) -> None:
    cid = cards.conversation("b1", "m1")
    first = post_card(cards, cid, order(sender_id="m1"), key="card-7")
    assert first.status_code == 201, first.text
    retry = post_card(cards, cid, order(sender_id="m1"), key="card-7")
    assert retry.status_code == 200 and retry.json() == first.json()
    other = post_card(cards, cid, order(sender_id="m1", total_fen=6100), key="card-7")
    assert_error(other, 422, "idempotency_key_reused", "Idempotency-Key")
    assert [m["id"] for m in cards.messages(cid)] == [first.json()["id"]]


@pytest.mark.parametrize("case", ["too_large", "not_an_image", "bomb", "too_many_frames", "missing"])
def test_a_picture_that_is_not_a_safe_image_leaves_the_card_without_one(cards: Api, host: ImageHost,
                                                                        case: str) -> None:
    body, content_type = {
        "too_large": (image_bytes("PNG") + bytes(5 * 1024 * 1024), "image/png"),
        "not_an_image": (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", "image/svg+xml"),
        "bomb": (png_bomb(), "image/png"),
        "too_many_frames": (gif_many_frames(1001, 2, 2), "image/gif"),
        "missing": (b"", ""),
    }[case]
    url = host.serve("/bad", body, content_type) if case != "missing" else host.url("/nothing-here")
    cid = cards.conversation("b1", "m1")
    sent = post_card(cards, cid, product(image_url=url))
    assert sent.status_code == 201, sent.text
    assert sent.json()["card"]["image"] is None and sent.json()["card"]["image_url"] == url
    viewer = TestClient(cards.client.app, base_url=BASE_URL)
    sign_in(viewer, "b1", target="m1")
    assert 'data-testid="card-image"' not in viewer.get(f"/chat/c/{cid}").text
    assert viewer.get(f"/cards/{sent.json()['id']}/image").status_code == 404


def test_a_slow_image_host_does_not_hold_the_card_back(cards: Api, host: ImageHost) -> None:
    host.serve("/slow", image_bytes("PNG"))
    cid = cards.conversation("b1", "m1")
    started = time.monotonic()
    sent = post_card(cards, cid, product(image_url=host.url("/slow")))
    took = time.monotonic() - started
    host.release()
    assert sent.status_code == 201 and sent.json()["card"]["image"] is None
    assert host.hits["/slow"] == 1 and took < IMAGE_SECONDS + 1.0


def test_a_private_address_is_not_fetched_unless_the_setting_allows_it(database_url: str, tmp_path: Path,
                                                                       host: ImageHost) -> None:
    picture = host.serve("/inside.png", image_bytes("PNG"))
    for api in card_api(database_url, tmp_path):  # KEFU_CARD_IMAGE_PRIVATE_TARGETS not set
        cid = api.conversation("b1", "m1")
        sent = post_card(api, cid, product(image_url=picture))
        assert sent.status_code == 201 and sent.json()["card"]["image"] is None
    assert host.hits["/inside.png"] == 0
