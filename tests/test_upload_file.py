"""Uploading files and images into a conversation (POST /chat/c/{cid}/files), through the real app, on SQLite and
MariaDB.

What people rely on: every allowed type arrives as a message of the right kind, with [图片] / [文件] in the list;
the type comes from the file's bytes, not its name or the browser's claim; hostile, empty, mismatched and oversized
files are refused with a clear message and leave nothing behind (no message, no file on disk); stored files get
random names under YYYY/MM/DD/ inside the upload directory, whatever the uploaded name says; only the
conversation's participants may upload (not strangers, not admins).
"""

from __future__ import annotations

import re
import socket
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from litestar.testing import TestClient
from sqlalchemy.orm import Session

from app.db.models import Attachment, Message
from app.main import create_app
from tests.admin_support import make_admin, sign_in_admin, use_fast_hashing
from tests.conftest import make_settings
from tests.dom import Element, parse
from tests.file_samples import SAMPLES, Party, files_under, image_bytes, pdf_bytes, png_bomb, upload
from tests.seeding import count
from tests.support import ServerProcess, free_port, other_browser, server_env, sign_in_to

MB = 1024 * 1024
STORED_RE = re.compile(r"^(\d{4})/(\d{2})/(\d{2})/([0-9A-Za-z_-]{16,})(\.[a-z]+)?$")
SVG = (b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
       b"<script>alert(document.cookie)</script><rect width='10' height='10'/></svg>\n")
HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script>\xe4\xbd\xa0\xe5\xa5\xbd</body></html>\n"


def the_message(html: str) -> Element:
    return parse(html).one(testid="message")


def attachment_of(db: Session, message_id: int) -> Attachment:
    db.rollback()
    attachment = db.get(Attachment, message_id)
    assert attachment is not None, f"message {message_id} has no attachment"
    return attachment


def list_preview(client: TestClient, cid: int) -> str:
    """The last-message text of the conversation's item in the signed-in person's conversation list."""
    listing = client.get("/chat/list")
    assert listing.status_code == 200, listing.text
    item = parse(listing.text).one(testid="conversation", data_conversation_id=str(cid))
    return item.one(cls="conv-preview").text()


def assert_refused_and_nothing_kept(response: httpx.Response, status: int, words: str | tuple[str, ...], db: Session,
                                    upload_dir: Path) -> None:
    """Refused with `status` and a message saying why (one of `words`); no message, attachment or file kept."""
    assert response.status_code == status, response.text
    text = parse(response.text).text()
    assert any(word in text for word in ((words,) if isinstance(words, str) else words)), text
    assert 'data-testid="message"' not in response.text
    assert count(db, Message) == 0
    assert count(db, Attachment) == 0
    assert files_under(upload_dir) == [], "a refused upload left a file on disk"


@pytest.fixture
def upload_dir(tmp_path: Path) -> Path:
    return tmp_path / "uploads"  # where app_client's settings put them (tests.conftest.make_settings)


@pytest.fixture
def b1(app_client: TestClient) -> tuple[TestClient, str, int]:
    """b1 signed in with the conversation with m1 open: (client, CSRF token, conversation id)."""
    token, cid = sign_in_to(app_client, "b1", "m1")
    return app_client, token, cid


@pytest.fixture
def both(b1: tuple[TestClient, str, int]) -> Iterator[tuple[Party, Party]]:
    """b1 and m1, each in their own browser with their conversation open. Tests that send many files share
    them out between the two, as people do (and so that no one person's upload rate matters here)."""
    client, token, cid = b1
    with other_browser(client) as m1:
        m1_token, m1_cid = sign_in_to(m1, "m1", "b1")
        assert m1_cid == cid
        yield Party("b1", client, token, cid), Party("m1", m1, m1_token, cid)


# --- every allowed type ---

def test_every_allowed_type_is_accepted_as_the_right_kind_of_message(
    both: tuple[Party, Party], db: Session, upload_dir: Path, subtests: pytest.Subtests
) -> None:
    for n, (key, sample) in enumerate(SAMPLES.items()):
        sender, peer = both[n % 2], both[(n + 1) % 2]
        with subtests.test(msg=f"{key} from {sender.user_id}"):
            # the browser's claim plays no part: everything is sent as application/octet-stream
            response = sender.upload(sample.name, sample.content)
            assert response.status_code == 201, response.text
            message = the_message(response.text)
            message_id = message.get("data-message-id")
            assert message.get("data-conversation-id") == str(sender.cid)
            assert message.get("data-sender-id") == sender.user_id
            assert f"msg-kind-{sample.kind}" in message.classes
            link = message.one("a")
            assert link.get("href") == f"/files/{message_id}"  # an image opens full size on click
            if sample.kind == "image":
                image = message.one("img")
                assert image.get("src") == f"/files/{message_id}/thumb"
                assert image.get("loading") == "lazy"
                assert int(image.get("width") or 0) > 0 and int(image.get("height") or 0) > 0
            else:
                assert sample.name in link.text()

            attachment = attachment_of(db, int(message_id or 0))  # a fresh snapshot first
            stored = db.get(Message, attachment.message_id)
            assert stored is not None and stored.kind == sample.kind and stored.sender_id == sender.user_id
            assert attachment.original_name == sample.name
            assert attachment.content_type.split(";")[0] == sample.content_type
            assert attachment.size == len(sample.content)
            assert (upload_dir / attachment.stored_path).read_bytes() == sample.content

            expected = "[图片]" if sample.kind == "image" else "[文件]"
            assert list_preview(sender.client, sender.cid) == expected
            assert list_preview(peer.client, peer.cid) == expected
    assert count(db, Message) == len(SAMPLES)


def test_the_peer_sees_the_upload_in_the_thread_and_in_the_list(both: tuple[Party, Party]) -> None:
    b1, m1 = both
    response = b1.upload("包装.png", image_bytes("PNG"), claimed_type="text/html")
    assert response.status_code == 201, response.text
    message_id = the_message(response.text).get("data-message-id")
    assert list_preview(m1.client, m1.cid) == "[图片]"
    thread = parse(m1.client.get(f"/chat/c/{m1.cid}").text).one(testid="thread")
    shown = thread.one(testid="message", data_message_id=message_id)
    assert shown.get("data-sender-id") == "b1"
    image = shown.one("img")
    assert image.get("loading") == "lazy" and image.get("width") and image.get("height")


def test_a_big_image_is_shown_small_with_its_proportions(b1: tuple[TestClient, str, int], db: Session) -> None:
    client, token, cid = b1
    response = upload(client, cid, token, "大图.jpg", image_bytes("JPEG", size=(1600, 800)))
    assert response.status_code == 201, response.text
    image = the_message(response.text).one("img")
    width, height = int(image.get("width") or 0), int(image.get("height") or 0)
    assert 0 < width <= 480 and 0 < height <= 480
    assert abs(width / height - 2.0) < 0.05
    attachment = attachment_of(db, int(the_message(response.text).get("data-message-id") or 0))
    assert (attachment.width, attachment.height) == (1600, 800)


# --- where and how files are stored ---

def test_stored_under_the_date_with_a_random_name_and_two_of_one_name_never_collide(
    b1: tuple[TestClient, str, int], db: Session, upload_dir: Path
) -> None:
    client, token, cid = b1
    first_bytes, second_bytes = pdf_bytes(), pdf_bytes() + b"% second copy\n"
    first = upload(client, cid, token, "报价单.pdf", first_bytes)
    second = upload(client, cid, token, "报价单.pdf", second_bytes)
    assert first.status_code == 201 and second.status_code == 201, (first.text, second.text)

    attachments = [attachment_of(db, int(the_message(r.text).get("data-message-id") or 0)) for r in (first, second)]
    assert [a.original_name for a in attachments] == ["报价单.pdf", "报价单.pdf"]
    assert attachments[0].stored_path != attachments[1].stored_path
    today = datetime.now(UTC).date()
    for attachment in attachments:
        match = STORED_RE.match(attachment.stored_path)
        assert match, attachment.stored_path
        stored_day = datetime(int(match[1]), int(match[2]), int(match[3]), tzinfo=UTC).date()
        assert stored_day in (today, today - timedelta(days=1))  # a run across midnight
        assert "报价单" not in attachment.stored_path
    assert (upload_dir / attachments[0].stored_path).read_bytes() == first_bytes
    assert (upload_dir / attachments[1].stored_path).read_bytes() == second_bytes
    names = {Path(a.stored_path).name for a in attachments}
    assert len(names) == 2


def test_a_hostile_name_is_sanitised_for_display_and_never_used_as_a_path(
    b1: tuple[TestClient, str, int], db: Session, upload_dir: Path, tmp_path: Path
) -> None:
    client, token, cid = b1
    before = {p for p in files_under(tmp_path) if upload_dir not in p.parents}
    raw_name = "../../..\\..\\etc/passwd\x1b[31m\x07/../报价\t单\x00.txt"
    boundary = "kefu-test-boundary"
    body = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{raw_name}"\r\n'
        "Content-Type: text/plain\r\n\r\n"
        "第一行\n"
        f"\r\n--{boundary}--\r\n"
    ).encode()
    response = client.post(f"/chat/c/{cid}/files", content=body, headers={
        "X-CSRFToken": token, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 201, response.text

    attachment = attachment_of(db, int(the_message(response.text).get("data-message-id") or 0))
    name = attachment.original_name
    assert name.endswith("报价单.txt"), name
    assert "/" not in name and "\\" not in name and ".." not in name
    assert all(unicodedata.category(c)[0] != "C" for c in name), repr(name)
    assert name in the_message(response.text).text()

    stored = (upload_dir / attachment.stored_path).resolve()
    assert upload_dir.resolve() in stored.parents
    assert stored.read_bytes() == "第一行\n".encode()
    after = {p for p in files_under(tmp_path) if upload_dir not in p.parents}
    assert after == before, "something was written outside the upload directory"


# --- refused: type, content, size; nothing kept ---

UNSUPPORTED = ("不支持", "不符")  # either "not an allowed type" or "the content does not match the name"
HOSTILE: dict[str, tuple[str, bytes, str, int, tuple[str, ...]]] = {
    "html named .png": ("photo.png", HTML, "image/png", 415, UNSUPPORTED),
    "html named .html": ("page.html", HTML, "text/html", 415, UNSUPPORTED),
    "svg named .svg": ("logo.svg", SVG, "image/svg+xml", 415, UNSUPPORTED),
    "svg named .png": ("logo.png", SVG, "image/png", 415, UNSUPPORTED),
    "svg without xml prolog named .jpg": ("logo.jpg", SVG.split(b"\n", 1)[1], "image/jpeg", 415, UNSUPPORTED),
    "png named .jpg": ("照片.jpg", image_bytes("PNG"), "image/jpeg", 415, ("不符",)),
    "jpeg named .pdf": ("报价单.pdf", image_bytes("JPEG"), "application/pdf", 415, ("不符",)),
    "pdf named .png": ("扫描件.png", pdf_bytes(), "image/png", 415, ("不符",)),
    "windows program named .pdf": ("invoice.pdf", b"MZ\x90\x00\x03" + bytes(600), "application/pdf", 415, UNSUPPORTED),
    "truncated png": ("破图.png", image_bytes("PNG", size=(300, 200))[:80], "image/png", 415, ("损坏",)),
    "decompression bomb png": ("炸弹.png", png_bomb(), "image/png", 413, ("图片尺寸太大",)),
    "zero bytes": ("空文件.txt", b"", "text/plain", 422, ("空",)),
}


def test_hostile_and_mismatched_files_are_refused_with_a_clear_message_and_nothing_kept(
    both: tuple[Party, Party], db: Session, upload_dir: Path, subtests: pytest.Subtests
) -> None:
    for n, (case, (name, content, claimed, status, words)) in enumerate(HOSTILE.items()):
        sender = both[n % 2]
        with subtests.test(msg=f"{case} from {sender.user_id}"):
            response = sender.upload(name, content, claimed_type=claimed)
            assert_refused_and_nothing_kept(response, status, words, db, upload_dir)
    opener, peer = both
    assert list_preview(opener.client, opener.cid) == ""  # b1 opened it: listed, with nothing in it
    listing = parse(peer.client.get("/chat/list").text)  # nothing was sent: m1's list does not show it yet
    assert listing.find_all(testid="conversation", data_conversation_id=str(peer.cid)) == []


def test_a_mismatch_names_what_the_file_really_is(b1: tuple[TestClient, str, int]) -> None:
    client, token, cid = b1
    response = upload(client, cid, token, "照片.jpg", image_bytes("PNG"), claimed_type="image/jpeg")
    assert response.status_code == 415
    text = parse(response.text).text()
    assert "PNG" in text and "照片.jpg" in text, text


def test_a_request_without_a_file_gets_a_message_and_stores_nothing(
    b1: tuple[TestClient, str, int], db: Session, upload_dir: Path
) -> None:
    client, token, cid = b1
    response = client.post(f"/chat/c/{cid}/files", files={"other": ("a.txt", b"hello", "text/plain")},
                           headers={"X-CSRFToken": token})
    assert_refused_and_nothing_kept(response, 422, "选择", db, upload_dir)


@pytest.fixture
def small_limit(database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, str, int]]:
    """The app with KEFU_MAX_UPLOAD_MB=1; b1 signed in with the conversation with m1 open."""
    app = create_app(make_settings(database_url, tmp_path, max_upload_mb=1))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        token, cid = sign_in_to(client, "b1", "m1")
        yield client, token, cid


def test_a_file_of_exactly_the_limit_is_accepted(small_limit: tuple[TestClient, str, int]) -> None:
    client, token, cid = small_limit
    response = upload(client, cid, token, "清单.txt", b"a" * MB)
    assert response.status_code == 201, response.text


def test_one_byte_over_the_limit_is_refused_by_its_actual_size(
    small_limit: tuple[TestClient, str, int], db: Session, upload_dir: Path
) -> None:
    client, token, cid = small_limit
    response = upload(client, cid, token, "清单.txt", b"a" * (MB + 1))
    assert_refused_and_nothing_kept(response, 413, "1 MB", db, upload_dir)


def test_an_oversized_body_without_content_length_is_refused(
    small_limit: tuple[TestClient, str, int], db: Session, upload_dir: Path
) -> None:
    """A chunked body (no Content-Length header): the size is found while reading, and refused."""
    client, token, cid = small_limit
    boundary = "kefu-chunked"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.txt\"\r\n"
            "Content-Type: text/plain\r\n\r\n").encode()

    def chunks() -> Iterator[bytes]:
        yield head
        for _ in range(6):
            yield b"b" * (MB // 2)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post(f"/chat/c/{cid}/files", content=chunks(), headers={
        "X-CSRFToken": token, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert response.status_code == 413, response.text
    assert count(db, Message) == 0
    assert files_under(upload_dir) == []


def test_a_content_length_over_the_limit_is_refused_at_once(
    small_limit: tuple[TestClient, str, int], db: Session, upload_dir: Path
) -> None:
    """The header alone decides: the small body that follows would otherwise be a perfectly good upload."""
    client, token, cid = small_limit
    request = client.build_request("POST", f"/chat/c/{cid}/files", files={"file": ("备注.txt", b"hello", "text/plain")},
                                   headers={"X-CSRFToken": token})
    request.headers["Content-Length"] = str(50 * MB)
    response = client.send(request)
    assert_refused_and_nothing_kept(response, 413, "1 MB", db, upload_dir)


def test_a_real_server_answers_413_before_the_body_is_sent(database_url: str, tmp_path: Path) -> None:
    """Over a socket: the headers promise 50 MB; the server answers 413 though not one byte of the body came."""
    server = ServerProcess(server_env(database_url, tmp_path, KEFU_MAX_UPLOAD_MB="1"), free_port()).start()
    try:
        with httpx.Client(base_url=server.url) as browser:
            token, cid = sign_in_to(browser, "b1", "m1")
            cookies = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall((
                f"POST /chat/c/{cid}/files HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                f"Cookie: {cookies}\r\nX-CSRFToken: {token}\r\n"
                f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {50 * MB}\r\n\r\n"
            ).encode())
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        status_line = answer.split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1.1 413"), answer[:300]
        assert files_under(tmp_path / "uploads") == []
    finally:
        server.stop()


# --- who may upload ---

def test_a_stranger_cannot_upload_into_someone_elses_conversation(
    b1: tuple[TestClient, str, int], db: Session, upload_dir: Path
) -> None:
    client, _token, cid = b1
    with other_browser(client) as stranger:
        for user_id, peer in (("b2", "m1"), ("m2", "b1")):
            stranger.cookies.clear()
            token, _own = sign_in_to(stranger, user_id, peer)
            response = upload(stranger, cid, token, "包装.png", image_bytes("PNG"))
            assert response.status_code == 403, (user_id, response.text)
    assert count(db, Message) == 0
    assert count(db, Attachment) == 0
    assert files_under(upload_dir) == []


def test_an_admin_cannot_upload(
    b1: tuple[TestClient, str, int], db: Session, upload_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _token, cid = b1
    use_fast_hashing(monkeypatch)
    make_admin(db)
    with other_browser(client) as admin:
        token = sign_in_admin(admin)
        response = upload(admin, cid, token, "包装.png", image_bytes("PNG"))
    assert response.status_code == 403, response.text
    assert count(db, Message) == 0
    assert files_under(upload_dir) == []


def test_no_upload_without_sign_in_or_csrf_token(
    b1: tuple[TestClient, str, int], db: Session, upload_dir: Path
) -> None:
    client, _token, cid = b1
    assert upload(client, cid, "forged", "包装.png", image_bytes("PNG")).status_code == 403
    without = client.post(f"/chat/c/{cid}/files", files={"file": ("包装.png", image_bytes("PNG"), "image/png")})
    assert without.status_code == 403
    with other_browser(client) as anonymous:
        page = anonymous.get("/login")
        token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text)
        assert token
        assert upload(anonymous, cid, token.group(1), "包装.png", image_bytes("PNG")).status_code == 401
    assert count(db, Message) == 0
    assert files_under(upload_dir) == []


ORDER_LIST = ("订单号,商品,数量,金额\r\n20261125-0042,板蓝根颗粒,200,3580.00\r\n"
              "20261125-0043,连花清瘟胶囊,50,1290.50\r\n")
NOTE = "您好，这是我们的报价单，请查收。价格含税，运费另计。\r\n"


@pytest.mark.parametrize(("name", "content", "charset"), [
    ("订单.csv", ORDER_LIST.encode("gbk"), "gb18030"),  # Excel on Chinese Windows
    ("订单.csv", "\ufeff".encode("utf-16-le") + ORDER_LIST.encode("utf-16-le"), "utf-16"),  # "Unicode text"
    ("订单.csv", "\ufeff".encode() + ORDER_LIST.encode(), "utf-8"),
    ("报价.txt", NOTE.encode("gbk") * 3, "gb18030"),
    ("報價.txt", "您好，這是我們的報價單，請查收。價格含稅，運費另計。\r\n".encode("big5") * 3, "big5"),
], ids=["gbk csv", "utf-16 csv", "utf-8 csv with bom", "gbk txt", "big5 txt"])
def test_chinese_csv_and_txt_in_the_encodings_people_save_are_accepted_and_served_as_written(
        b1: tuple[TestClient, str, int], name: str, content: bytes, charset: str) -> None:
    client, token, cid = b1
    response = upload(client, cid, token, name, content, "text/csv")
    assert response.status_code == 201, response.text
    mid = parse(response.text).one(testid="message").get("data-message-id")
    download = client.get(f"/files/{mid}")
    assert download.content == content
    assert download.headers["content-type"].endswith(f"charset={charset}")
    assert "订单号" in download.text or "报价" in download.text or "報價" in download.text


def test_a_text_file_in_no_encoding_people_use_says_which_are_accepted(b1: tuple[TestClient, str, int]) -> None:
    client, token, cid = b1
    response = upload(client, cid, token, "乱码.txt", bytes(range(128, 256)) * 8, "text/plain")
    assert response.status_code == 415
    assert "GBK" in response.text and "UTF-8" in response.text
