"""Images that would cost the server gigabytes (decompression bombs, huge canvases, damaged pixel data) are refused
from their headers, and the ones accepted are decoded in bounded memory: measured as the server's peak RSS."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from app.chat.files import IMAGE_WORKERS, MAX_DECODED_PIXELS
from tests.file_samples import gif_bomb, gif_many_frames, png_bomb, png_with_truncated_pixels, png_zeros, upload
from tests.support import ServerProcess, free_port, server_env, sign_in_to

MB = 1024 * 1024
DECODED_BYTES = MAX_DECODED_PIXELS * 4  # the largest image accepted, decoded as RGBA


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.fixture
def served(sqlite_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    server = ServerProcess(server_env(sqlite_url, tmp_path), free_port()).start()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        token, cid = sign_in_to(client, "b1", "m1")
        yield server, client, token, cid
    server.stop()


def ten_at_once(client: httpx.Client, cid: int, token: str, name: str, content: bytes) -> list[httpx.Response]:
    with ThreadPoolExecutor(10) as pool:
        return list(pool.map(lambda _: upload(client, cid, token, name, content, "image/png"), range(10)))


@pytest.mark.parametrize(("name", "content"), [
    ("35字节.gif", gif_bomb()),  # a 9500×9500 canvas around one 1×1 frame
    ("全零.png", png_zeros(9500, 9500, colour_type=2)),  # 263 KB, 270 MB of pixels
    ("炸弹.png", png_bomb()),  # 30000×30000 claimed
])
def test_decompression_bombs_are_refused_from_their_headers_without_the_memory(
        served, name: str, content: bytes) -> None:  # type: ignore[no-untyped-def]
    server, client, token, cid = served
    before = peak_rss(server.process.pid)
    responses = ten_at_once(client, cid, token, name, content)
    assert [r.status_code for r in responses] == [413] * 10
    assert all("图片尺寸太大" in r.text for r in responses)
    grew = peak_rss(server.process.pid) - before
    assert grew < 40 * MB, f"refusing ten bombs raised the server's peak memory by {grew / MB:.0f} MB"
    page = client.get(f"/chat/c/{cid}")
    assert name not in page.text  # nothing was stored


def test_an_animation_too_costly_to_compose_is_refused(served) -> None:  # type: ignore[no-untyped-def]
    _server, client, token, cid = served
    bomb = gif_many_frames()  # 23 KB: 999 one-pixel frames on a 4000 × 4000 canvas (counting them took 44 s)
    refused = upload(client, cid, token, "动图.gif", bomb, "image/gif")
    assert refused.status_code == 413 and "动图太大" in refused.text
    small = upload(client, cid, token, "小动图.gif", gif_many_frames(200, 100, 100), "image/gif")
    assert small.status_code == 201, small.text  # 200 frames of 100 × 100: an ordinary sticker


def test_the_largest_accepted_images_are_decoded_a_few_at_a_time_in_bounded_memory(served) -> None:  # type: ignore[no-untyped-def]
    server, client, token, cid = served
    largest = png_zeros(4000, 4000, colour_type=6)  # 16 million RGBA pixels: 64 MB decoded
    before = peak_rss(server.process.pid)
    responses = ten_at_once(client, cid, token, "大图.png", largest)
    assert [r.status_code for r in responses] == [201] * 10, [r.text for r in responses if r.status_code != 201]
    grew = peak_rss(server.process.pid) - before
    # each image decoded, and its premultiplied copy for resizing; plus the ten uploads and threads around them
    bound = IMAGE_WORKERS * DECODED_BYTES * 2 + 48 * MB
    assert grew < bound, f"peak memory grew {grew / MB:.0f} MB for ten 16-megapixel images (bound {bound / MB:.0f})"


def test_a_png_with_damaged_pixel_data_is_refused_not_a_server_error(served) -> None:  # type: ignore[no-untyped-def]
    _server, client, token, cid = served
    response = upload(client, cid, token, "半张图.png", png_with_truncated_pixels(), "image/png")
    assert response.status_code == 415 and "图片已损坏" in response.text


def test_a_large_progressive_jpeg_is_bound_like_an_image_decoded_whole(served) -> None:  # type: ignore[no-untyped-def]
    """A progressive JPEG keeps all its coefficients while decoding, whatever the draft scale: 25 million pixels of
    it would cost hundreds of MB, so it gets the 16-million-pixel bound, not the 100 million of a baseline JPEG."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (5000, 5000)).save(out, "JPEG", quality=10, progressive=True, subsampling=0)
    _server, client, token, cid = served
    response = upload(client, cid, token, "渐进.jpg", out.getvalue(), "image/jpeg")
    assert response.status_code == 413 and "图片尺寸太大" in response.text


def test_decoding_images_is_limited_per_person_whether_or_not_they_are_accepted(served) -> None:  # type: ignore[no-untyped-def]
    _server, client, token, cid = served
    refused = [upload(client, cid, token, "炸弹.png", png_bomb(), "image/png").status_code for _ in range(20)]
    assert refused == [413] * 20
    response = upload(client, cid, token, "照片.png", png_zeros(100, 100), "image/png")
    assert response.status_code == 429 and "图片发送太频繁" in response.text
