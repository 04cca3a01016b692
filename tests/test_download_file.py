"""Downloading files and thumbnails (GET /files/{message_id}, /files/{message_id}/thumb), through the real app, on
SQLite and MariaDB.

What people rely on: both participants (and admins) get the file back byte for byte with its own type; images open
inline, documents download as attachments under their original (UTF-8) name with nosniff; nothing uploaded is ever
served as HTML or SVG; thumbnails are real images no larger than 480 px; strangers get the 404 of an id without a
file (they cannot tell which ids carry files), people who are not signed in 401, unknown ids 404.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from urllib.parse import unquote

import httpx
import pytest
from litestar.testing import TestClient
from PIL import Image
from sqlalchemy.orm import Session

from app.chat import messages as msgs
from tests.admin_support import make_admin, sign_in_admin, use_fast_hashing
from tests.dom import parse
from tests.file_samples import SAMPLES, Party, image_bytes, upload
from tests.support import other_browser, sign_in_to

THUMB_MAX = 480
DANGEROUS_TYPES = ("text/html", "image/svg+xml", "application/xhtml+xml", "text/xml", "application/xml")


def send_file(client: TestClient, token: str, cid: int, name: str, content: bytes) -> int:
    response = upload(client, cid, token, name, content)
    assert response.status_code == 201, response.text
    return int(parse(response.text).one(testid="message").get("data-message-id") or 0)


def disposition(response: httpx.Response) -> tuple[str, str]:
    """(inline|attachment, the file name) from Content-Disposition; a non-ASCII name must come as filename*=UTF-8''."""
    header = response.headers.get("content-disposition", "")
    kind, _, params = header.partition(";")
    extended = re.search(r"filename\*\s*=\s*([\w-]+)''([^;\s]+)", params, re.IGNORECASE)
    if extended:
        assert extended[1].lower() == "utf-8", header
        return kind.strip().lower(), unquote(extended[2], encoding="utf-8", errors="strict")
    plain = re.search(r'filename\s*=\s*"([^"]*)"', params)
    return kind.strip().lower(), plain[1] if plain else ""


def media_type(response: httpx.Response) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip().lower()


@pytest.fixture
def b1(app_client: TestClient) -> tuple[TestClient, str, int]:
    """b1 signed in with the conversation with m1 open: (client, CSRF token, conversation id)."""
    token, cid = sign_in_to(app_client, "b1", "m1")
    return app_client, token, cid


@pytest.fixture
def both(b1: tuple[TestClient, str, int]) -> Iterator[tuple[Party, Party]]:
    """b1 and m1, each in their own browser with their conversation open."""
    client, token, cid = b1
    with other_browser(client) as m1:
        m1_token, m1_cid = sign_in_to(m1, "m1", "b1")
        assert m1_cid == cid
        yield Party("b1", client, token, cid), Party("m1", m1, m1_token, cid)


def send_samples(both: tuple[Party, Party], keys: list[str]) -> dict[str, int]:
    """The samples, sent by b1 and m1 in turn into their conversation: type key -> message id."""
    ids = {}
    for n, key in enumerate(keys):
        sender, sample = both[n % 2], SAMPLES[key]
        ids[key] = send_file(sender.client, sender.token, sender.cid, sample.name, sample.content)
    return ids


@pytest.fixture
def uploaded(both: tuple[Party, Party]) -> dict[str, int]:
    """Every allowed type: type key -> message id."""
    return send_samples(both, list(SAMPLES))


@pytest.fixture
def some(both: tuple[Party, Party]) -> dict[str, int]:
    """An image and two documents: type key -> message id."""
    return send_samples(both, ["png", "pdf", "docx"])


def test_both_participants_get_every_file_back_with_its_own_type(
    both: tuple[Party, Party], uploaded: dict[str, int], subtests: pytest.Subtests
) -> None:
    for key, message_id in uploaded.items():
        sample = SAMPLES[key]
        for person in both:
            with subtests.test(msg=f"{key} for {person.user_id}"):
                response = person.client.get(f"/files/{message_id}")
                assert response.status_code == 200, response.text
                assert response.content == sample.content
                assert media_type(response) == sample.content_type
                assert response.headers.get("x-content-type-options") == "nosniff"


def test_images_open_inline_and_documents_download_as_attachments_under_their_utf8_name(
    b1: tuple[TestClient, str, int], uploaded: dict[str, int], subtests: pytest.Subtests
) -> None:
    client, _token, _cid = b1
    for key, message_id in uploaded.items():
        sample = SAMPLES[key]
        with subtests.test(msg=key):
            response = client.get(f"/files/{message_id}")
            assert response.status_code == 200
            kind, name = disposition(response)
            assert kind == ("inline" if sample.kind == "image" else "attachment"), response.headers
            assert name == sample.name
            assert response.headers.get("x-content-type-options") == "nosniff"


def test_text_documents_are_plain_text_in_utf8(b1: tuple[TestClient, str, int], uploaded: dict[str, int]) -> None:
    client, _token, _cid = b1
    for key in ("txt", "csv"):
        response = client.get(f"/files/{uploaded[key]}")
        content_type = response.headers["content-type"].lower().replace(" ", "")
        assert content_type == f"{SAMPLES[key].content_type};charset=utf-8", content_type
        assert response.content.decode("utf-8") == SAMPLES[key].content.decode("utf-8")


def test_nothing_uploaded_is_served_as_html_or_svg(
    b1: tuple[TestClient, str, int], uploaded: dict[str, int]
) -> None:
    client, token, cid = b1
    # the nearest thing to markup that gets in: text with angle brackets
    markupish = send_file(client, token, cid, "说明.txt", "价格见附件 a < b, 1 > 0\n".encode())
    ids = [*uploaded.values(), markupish]
    for message_id in ids:
        for path in (f"/files/{message_id}", f"/files/{message_id}/thumb"):
            response = client.get(path)
            if path.endswith("/thumb") and response.status_code == 404:
                continue  # a document need not have a thumbnail
            assert response.status_code == 200, (path, response.text)
            assert media_type(response) not in DANGEROUS_TYPES, (path, response.headers)
            assert response.headers.get("x-content-type-options") == "nosniff", path
            if not media_type(response).startswith("image/"):
                assert disposition(response)[0] == "attachment", (path, response.headers)


THUMBNAIL_CASES = (
    ("PNG", "宽图.png", (2000, 1000)),
    ("JPEG", "竖图.jpg", (1200, 1600)),
    ("WEBP", "方图.webp", (900, 900)),
    ("GIF", "动图.gif", (640, 480)),
)


def test_a_thumbnail_is_an_image_no_larger_than_480_px_in_proportion(
    b1: tuple[TestClient, str, int], subtests: pytest.Subtests
) -> None:
    client, token, cid = b1
    for fmt, name, size in THUMBNAIL_CASES:
        with subtests.test(msg=f"{fmt} {size}"):
            original = image_bytes(fmt, size=size)
            message_id = send_file(client, token, cid, name, original)
            response = client.get(f"/files/{message_id}/thumb")
            assert response.status_code == 200, response.text
            assert media_type(response) in ("image/jpeg", "image/png", "image/webp", "image/gif")
            assert disposition(response)[0] == "inline"
            assert response.headers.get("x-content-type-options") == "nosniff"
            with Image.open(io.BytesIO(response.content)) as thumb:
                thumb.load()
                width, height = thumb.size
                assert Image.MIME[thumb.format or ""] == media_type(response)  # the bytes are what the header says
            assert 0 < max(width, height) <= THUMB_MAX, (width, height)
            assert max(width, height) >= min(THUMB_MAX, max(size)) - 1  # scaled down, not to a speck
            assert abs(width / height - size[0] / size[1]) < 0.02
            full = client.get(f"/files/{message_id}")
            assert full.content == original  # the original is kept whole


def test_a_small_image_is_not_blown_up(b1: tuple[TestClient, str, int]) -> None:
    client, token, cid = b1
    message_id = send_file(client, token, cid, "小图.png", image_bytes("PNG", size=(40, 30)))
    with Image.open(io.BytesIO(client.get(f"/files/{message_id}/thumb").content)) as thumb:
        assert thumb.size == (40, 30)


def test_strangers_get_404_as_for_an_id_without_a_file(b1: tuple[TestClient, str, int], some: dict[str, int]) -> None:
    client, _token, _cid = b1
    with other_browser(client) as stranger:
        for user_id, peer in (("b2", "m1"), ("m2", "b1"), ("p1", "m1")):
            stranger.cookies.clear()
            sign_in_to(stranger, user_id, peer)
            nothing = stranger.get("/files/999999")
            assert nothing.status_code == 404
            for message_id in (some["png"], some["pdf"]):
                for path in (f"/files/{message_id}", f"/files/{message_id}/thumb"):
                    response = stranger.get(path)
                    assert (response.status_code, response.text) == (404, nothing.text), (user_id, path)
                    assert response.content not in (SAMPLES["png"].content, SAMPLES["pdf"].content)
                    assert media_type(response) == "text/html"  # the error page, not the file


def test_people_who_are_not_signed_in_get_401(b1: tuple[TestClient, str, int], some: dict[str, int]) -> None:
    client, _token, _cid = b1
    with other_browser(client) as anonymous:
        for message_id in (some["png"], some["pdf"]):
            for path in (f"/files/{message_id}", f"/files/{message_id}/thumb"):
                response = anonymous.get(path)
                assert response.status_code == 401, (path, response.status_code)
                assert "登录" in parse(response.text).text()


def test_admins_may_download_and_see_thumbnails(
    b1: tuple[TestClient, str, int], some: dict[str, int], db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _token, _cid = b1
    use_fast_hashing(monkeypatch)
    make_admin(db)
    with other_browser(client) as admin:
        sign_in_admin(admin)
        image = admin.get(f"/files/{some['png']}")
        assert image.status_code == 200 and image.content == SAMPLES["png"].content
        thumb = admin.get(f"/files/{some['png']}/thumb")
        assert thumb.status_code == 200 and media_type(thumb).startswith("image/")
        document = admin.get(f"/files/{some['docx']}")
        assert document.status_code == 200 and document.content == SAMPLES["docx"].content
        assert disposition(document) == ("attachment", SAMPLES["docx"].name)


def test_unknown_ids_get_404(b1: tuple[TestClient, str, int], some: dict[str, int], db: Session) -> None:
    client, _token, cid = b1
    text_message = msgs.send_message(db, cid, "b1", "这是一条文字消息")
    db.commit()
    for raw in (str(max(some.values()) + 1000), str(text_message.id), "abc", "0", "-1", "99999999999999999999"):
        for path in (f"/files/{raw}", f"/files/{raw}/thumb"):
            assert client.get(path).status_code == 404, path
