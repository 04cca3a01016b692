"""A card's picture, shown through Kefu only: fetched once from the marketplace's image host, checked, made a
thumbnail, and kept under UPLOAD_DIR/cards/ by the SHA-256 of its URL (the same URL is fetched once, whichever card
shows it). The fetch follows app.chat.webhook_targets' rules: http(s) only, public addresses only unless
KEFU_CARD_IMAGE_PRIVATE_TARGETS allows private ones, the connection made to the address that was checked, no
redirects. It is bounded in time (`seconds`, the whole fetch) and bytes (MAX_IMAGE_BYTES), and the image is decoded
under the upload path's safety rules (app.chat.files: pixel and frame bounds, the bounded decoding pool). Whatever
goes wrong, the card is shown without a picture: `thumbnail` answers None and logs why.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
from pathlib import Path

import httpx
from anyio import to_thread

from app.chat.errors import ChatError
from app.chat.files import image_key, process_image, thumbnail_suffix
from app.chat.webhook_targets import pinned

log = logging.getLogger("kefu.cards")

CACHE_DIR = "cards"
MAX_IMAGE_BYTES = 5 * 1024 * 1024
DEFAULT_SECONDS = 3.0


class NotAnImage(Exception):
    """The host answered with something that is not a picture Kefu shows (status, size or bytes)."""


def cached(upload_dir: Path, url: str) -> str | None:
    """The thumbnail already kept for `url` (its path relative to `upload_dir`), or None."""
    digest = _digest(url)
    for suffix in (".thumb.jpg", ".thumb.png"):
        relative = Path(CACHE_DIR) / digest[:2] / (digest + suffix)
        if (upload_dir / relative).is_file():
            return str(relative)
    return None


def _digest(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


async def thumbnail(upload_dir: Path, url: str, private_allowed: bool, seconds: float = DEFAULT_SECONDS) -> str | None:
    """The path (relative to `upload_dir`) of the thumbnail of the image at `url`: the kept one, else fetched within
    `seconds` (the whole request: resolving, connecting, reading) and decoded now. None when the image cannot be
    had (refused address, error status, more than MAX_IMAGE_BYTES, not a JPEG/PNG/GIF/WebP, damaged, too many pixels
    or frames, too slow); never raises for those."""
    if (kept := cached(upload_dir, url)) is not None:
        return kept
    try:
        async with asyncio.timeout(seconds):
            body = await _fetch(url, private_allowed)
        return await to_thread.run_sync(_keep, upload_dir, url, body)
    except TimeoutError:
        log.warning("card image %s: no answer within %g s", url[:200], seconds)
    except (ChatError, NotAnImage, httpx.HTTPError, OSError) as error:
        log.warning("card image %s: %s", url[:200], error)
    return None


async def _fetch(url: str, private_allowed: bool) -> bytes:
    """The image's bytes from the checked address. Raises InvalidInput (address refused), NotAnImage or httpx's
    errors."""
    target, host, extensions = await pinned(url, private_allowed)
    headers = {"Host": host, "User-Agent": "Kefu-Card-Images/1", "Accept": "image/*", "Accept-Encoding": "identity"}
    async with httpx.AsyncClient(follow_redirects=False) as client, client.stream(
            "GET", target, headers=headers, extensions=extensions) as response:
        if response.status_code != 200:
            raise NotAnImage(f"status {response.status_code}")
        body = bytearray()
        async for chunk in response.aiter_raw():  # raw: a compressed body is not inflated past the bound
            body += chunk
            if len(body) > MAX_IMAGE_BYTES:
                raise NotAnImage(f"larger than {MAX_IMAGE_BYTES} bytes")
    return bytes(body)


def _keep(upload_dir: Path, url: str, body: bytes) -> str:
    """Check and decode `body` (app.chat.files.process_image), keep its thumbnail under the URL's digest and answer
    its relative path. Raises NotAnImage, or app.chat.files' TooLarge, UnsupportedType or Busy."""
    key = image_key(body[:16])
    if key is None:
        raise NotAnImage("not a JPEG, PNG, GIF or WebP image")
    digest = _digest(url)
    relative = Path(CACHE_DIR) / digest[:2] / (digest + thumbnail_suffix(key))
    target = upload_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    work = f"{digest}.{secrets.token_hex(8)}"  # a name of this fetch's own
    original, made = target.with_name(work + ".orig"), target.with_name(work + thumbnail_suffix(key))
    try:
        original.write_bytes(body)
        process_image(original, key, made)
        os.replace(made, target)  # two fetches of one URL at once: either thumbnail will do
    finally:
        original.unlink(missing_ok=True)
        made.unlink(missing_ok=True)
    return str(relative)
