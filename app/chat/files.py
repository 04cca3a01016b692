"""Files and images in conversations: the type is decided from the file's own bytes, never from its name
or the browser's claim; files are stored under UPLOAD_DIR/YYYY/MM/DD/ with a random name."""

from __future__ import annotations

import concurrent.futures
import os
import secrets
import unicodedata
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePath
from typing import BinaryIO

import charset_normalizer
from PIL import Image, UnidentifiedImageError
from sqlalchemy.orm import Session

from app.chat.errors import ChatError, InvalidInput, Unavailable
from app.chat.messages import Admit, KeyReused, Outgoing, Sent, send, stored_with_key
from app.db.models import Attachment, utcnow
from app.i18n import gettext as _

THUMBNAIL_SIZE = 480
MAX_NAME_LENGTH = 200
SNIFF_BYTES = 8192
# Images are checked from their headers before any decoding (check_image), then decoded in bounded memory: at most
# IMAGE_WORKERS at once per process, each at most MAX_DECODED_PIXELS (64 MB as RGBA), or a JPEG at 1/8 of at most
# MAX_JPEG_PIXELS. Pillow's own bomb check stops anything larger that slips past (an error, not a warning).
MAX_DECODED_PIXELS = 16_000_000
MAX_JPEG_PIXELS = 100_000_000
MAX_FRAMES = 1000
MAX_ANIMATION_PIXELS = 400_000_000  # canvas pixels summed over an animation's frames (each is composed on the canvas)
IMAGE_WORKERS = 2
IMAGE_WAIT_SECONDS = 30.0
_IMAGE_POOL = concurrent.futures.ThreadPoolExecutor(IMAGE_WORKERS, thread_name_prefix="kefu-image")
Image.MAX_IMAGE_PIXELS = MAX_JPEG_PIXELS // 2  # Pillow raises past twice this, warns below


class UnsupportedType(ChatError):
    """Not an allowed type, or the bytes do not match the name (415)."""

    code = "unsupported_type"


class TooLarge(ChatError):
    """Larger than the configured limit, or an image with too many pixels or frames (413)."""

    code = "too_large"


class Busy(Unavailable):
    """Every place to decode images is taken for longer than IMAGE_WAIT_SECONDS (503)."""


@dataclass(frozen=True)
class FileType:
    kind: str  # "image" or "file"
    content_type: str
    extensions: tuple[str, ...]  # the names such a file may have (the first is the canonical one)


TYPES = {
    "jpeg": FileType("image", "image/jpeg", (".jpg", ".jpeg")),
    "png": FileType("image", "image/png", (".png",)),
    "gif": FileType("image", "image/gif", (".gif",)),
    "webp": FileType("image", "image/webp", (".webp",)),
    "pdf": FileType("file", "application/pdf", (".pdf",)),
    "doc": FileType("file", "application/msword", (".doc",)),
    "xls": FileType("file", "application/vnd.ms-excel", (".xls",)),
    "docx": FileType("file", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", (".docx",)),
    "xlsx": FileType("file", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", (".xlsx",)),
    "zip": FileType("file", "application/zip", (".zip",)),
    "txt": FileType("file", "text/plain; charset=utf-8", (".txt",)),
    "csv": FileType("file", "text/csv; charset=utf-8", (".csv",)),
}
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
MARKUP_HINTS = ("<html", "<!doctype", "<script", "<svg", "<?xml", "<body", "<iframe", "<head")
# charset-normalizer's names of the Chinese encodings people's files are in, and the one each is read as
CHINESE_CHARSETS = {"gb18030": "gb18030", "gbk": "gb18030", "gb2312": "gb18030", "big5": "big5", "big5hkscs": "big5"}


def display_name(raw: str | None) -> str:
    """The original name, made safe for display only (it is never used as a path)."""
    name = PurePath((raw or "").replace("\\", "/")).name
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip().strip(".")
    if len(name) > MAX_NAME_LENGTH:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: MAX_NAME_LENGTH - len(ext) - 1] + dot + ext) if dot and len(ext) < 10 else name[:MAX_NAME_LENGTH]
    return name or "file"


def _extension(name: str) -> str:
    return os.path.splitext(name)[1].lower()


def text_charset(head: bytes) -> str | None:
    """The charset of a text file from its first bytes: "utf-8", "utf-16" (with its byte order mark), or what
    charset-normalizer recognises among the Chinese encodings Excel and editors on Chinese Windows save ("gb18030",
    which reads GBK and GB2312 too, or "big5"); None when the bytes are not text in one of them, or look like markup
    (HTML, SVG, XML), which a browser could run."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        charset = "utf-16"
    elif b"\x00" in head:
        return None
    elif _is_utf8(head):
        charset = "utf-8"
    else:
        best = charset_normalizer.from_bytes(head).best()
        charset = CHINESE_CHARSETS.get(best.encoding) if best is not None else None
        if charset is None:
            return None
    text = head.decode(charset, errors="ignore").lstrip("\ufeff \t\r\n").lower()
    if any(hint in text[:1024] for hint in MARKUP_HINTS):
        return None
    return charset


def _is_utf8(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        return error.start >= len(head) - 4  # only a character cut at the end of the sample
    return True


def _zip_flavour(file: BinaryIO) -> str:
    try:
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return ""
    if "[Content_Types].xml" in names:
        if any(n.startswith("word/") for n in names):
            return "docx"
        if any(n.startswith("xl/") for n in names):
            return "xlsx"
    return "zip"


def image_key(head: bytes) -> str | None:
    """The TYPES key of an image from its first bytes ("jpeg", "png", "gif" or "webp"), or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def thumbnail_suffix(key: str) -> str:
    """The name ending of an image's thumbnail, which decides the type it is saved and served as: PNG for images
    that may be transparent, JPEG for photos."""
    return ".thumb.png" if key in ("png", "gif", "webp") else ".thumb.jpg"


def sniff(file: BinaryIO, name: str) -> str:
    """The type key of TYPES from the bytes; the name only tells apart types whose bytes are alike
    (doc/xls share one container, txt/csv are both text). Raises UnsupportedType."""
    file.seek(0)
    head = file.read(SNIFF_BYTES)
    file.seek(0)
    ext = _extension(name)
    if image := image_key(head):
        key = image
    elif head.startswith(b"%PDF-"):
        key = "pdf"
    elif head.startswith(OLE2_MAGIC):
        key = "xls" if ext == ".xls" else "doc"
    elif head.startswith(b"PK\x03\x04"):
        key = _zip_flavour(file)
        file.seek(0)
    elif text_charset(head) is not None:
        key = "csv" if ext == ".csv" else "txt"
    else:
        key = ""
    if key not in TYPES:
        raise UnsupportedType(_(
            "不支持这种文件类型。可以发送图片（JPEG、PNG、GIF、WebP）和 PDF、Word、Excel、TXT、CSV、ZIP 文件；"
            "TXT 和 CSV 须是 UTF-8、UTF-16、GBK（GB18030）或 Big5 编码的文字。"))
    if ext not in TYPES[key].extensions:
        raise UnsupportedType(_("文件内容与文件名不符：内容是 {kind}，文件名却是“{name}”。").format(
            kind=key.upper(), name=name))
    return key


def process_image(path: Path, key: str, thumbnail: Path) -> tuple[int, int]:
    """The image's (width, height): check_image, then _make_thumbnail, on one of the IMAGE_WORKERS image threads;
    Busy when none is free within IMAGE_WAIT_SECONDS. Own threads, not the request's: the memory allocator keeps
    what a thread freed for that thread, so decoding on any of the many request threads would let the peak grow with
    their number."""
    def _decode() -> tuple[int, int]:
        size = check_image(path, key)
        _make_thumbnail(path, thumbnail)
        return size

    future = _IMAGE_POOL.submit(_decode)
    try:
        return future.result(timeout=IMAGE_WAIT_SECONDS)
    except concurrent.futures.TimeoutError as error:
        if future.cancel():
            raise Busy(_("服务器正忙，图片没有发出。请稍后重试。")) from error
        return future.result()  # already being decoded: bounded by the image's own size


def _too_large_image() -> TooLarge:
    return TooLarge(_("图片尺寸太大：最大 {mp} 万像素（JPEG 照片 {jpeg} 万）。").format(
        mp=MAX_DECODED_PIXELS // 10_000, jpeg=MAX_JPEG_PIXELS // 10_000))


def check_image(path: Path, key: str) -> tuple[int, int]:
    """The image's (width, height) in pixels, read from its header before anything is decoded: the canvas (a GIF's
    logical screen, whatever its frames) at most MAX_DECODED_PIXELS (MAX_JPEG_PIXELS for JPEG, which is decoded at
    a fraction of its size), at most MAX_FRAMES frames, and chunks that check out. Raises TooLarge or
    UnsupportedType (damaged)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            # a progressive JPEG keeps every coefficient of the full image while it decodes, whatever the draft
            # scale: it is bound like the formats decoded whole
            reduced = key == "jpeg" and not image.info.get("progressive") and not image.info.get("progression")
            if width * height > (MAX_JPEG_PIXELS if reduced else MAX_DECODED_PIXELS):
                raise _too_large_image()
            _count_frames(image)
            image.verify()  # chunk checksums and structure, without decoding
        return width, height
    except Image.DecompressionBombError as error:
        raise _too_large_image() from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        raise UnsupportedType(_("图片已损坏，无法显示。")) from error


def _count_frames(image: Image.Image) -> None:
    """TooLarge past MAX_FRAMES frames (an animation that would stall the viewers' browsers), or past
    MAX_ANIMATION_PIXELS of canvas over all frames: Pillow composes every frame it passes onto the whole canvas, so
    999 one-pixel frames on a 4000 × 4000 canvas (23 KB of GIF) took 44 s to count. Stops counting at either."""
    if not getattr(image, "is_animated", False):
        return
    canvas = image.size[0] * image.size[1]
    frames = 1
    try:
        while frames <= MAX_FRAMES and frames * canvas <= MAX_ANIMATION_PIXELS:
            image.seek(frames)
            frames += 1
    except EOFError:
        image.seek(0)
        return
    if frames > MAX_FRAMES:
        raise TooLarge(_("动图的帧数太多：最多 {frames} 帧。").format(frames=MAX_FRAMES))
    raise TooLarge(_("动图太大：画面尺寸乘以帧数超过了 {mp} 亿像素。").format(mp=MAX_ANIMATION_PIXELS // 100_000_000))


def _make_thumbnail(path: Path, target: Path) -> tuple[int, int]:
    """A thumbnail of at most THUMBNAIL_SIZE px, saved in the format its name says (.png or .jpg: the name decides
    the type it is served as). JPEG is decoded at 1/2–1/8 of its size (draft); others whole, which check_image bounds
    to MAX_DECODED_PIXELS (64 MB as RGBA); the first frame only. Raises UnsupportedType when the data is damaged."""
    as_png = target.suffix == ".png"
    try:
        with Image.open(path) as image:
            image.seek(0)
            image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))  # draft() for JPEG, then reduce() and resize
            frame = image.convert("RGBA" if as_png else "RGB")
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise UnsupportedType(_("图片已损坏，无法显示。")) from error
    if as_png:
        frame.save(target, "PNG", optimize=True)
    else:
        frame.save(target, "JPEG", quality=82)
    return frame.size


def save_upload(session: Session, upload_dir: Path, outgoing: Outgoing, file: BinaryIO, max_bytes: int,
                admit: Admit | None = None, admit_decoding: Admit | None = None) -> Sent:
    """Check the file (size in bytes, type from its bytes, images decoded), write it (and a thumbnail) under
    `upload_dir`, then send it as an image or file message named `outgoing.body` through `send`.
    Raises InvalidInput (empty), TooLarge, UnsupportedType, or what `send` raises; nothing is left on disk then, nor
    when it is a retry (same Idempotency-Key) of an upload already stored: `send` answers with that message."""
    name = display_name(outgoing.body)
    file.seek(0, os.SEEK_END)
    size = file.tell()
    file.seek(0)
    if size == 0:
        raise InvalidInput(_("文件是空的。"))
    if size > max_bytes:
        raise TooLarge(_("文件太大：最大 {mb} MB。").format(mb=max_bytes // (1024 * 1024)))
    if outgoing.client_key is not None and (earlier := stored_with_key(session, outgoing)) is not None:
        # a retry of an upload already stored: answered with it, nothing written or decoded again
        if earlier.attachment is None or earlier.attachment.size != size:
            raise KeyReused(_("这个 Idempotency-Key 已经用于另一条不同的消息。"))
        return send(session, replace(outgoing, body=name, kind=earlier.kind), admit)
    key = sniff(file, name)
    file_type = TYPES[key]
    content_type = file_type.content_type
    if file_type.content_type.startswith("text/"):  # served in the charset it was written in
        file.seek(0)
        content_type = content_type.replace("utf-8", text_charset(file.read(SNIFF_BYTES)) or "utf-8")
        file.seek(0)
    relative = Path(f"{utcnow():%Y/%m/%d}") / (secrets.token_hex(16) + file_type.extensions[0])
    target = upload_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "xb") as out:  # "x": two uploads never overwrite each other
        while chunk := file.read(1024 * 1024):
            out.write(chunk)
    thumb_path: Path | None = None
    try:
        width = height = None
        thumb = None
        if file_type.kind == "image":
            thumb_path = target.with_name(target.stem + thumbnail_suffix(key))
            if admit_decoding is not None:  # decoding is the costly part: bounded per person, accepted or not
                admit_decoding(outgoing.sender)
            width, height = process_image(target, key, thumb_path)
            thumb = str(thumb_path.relative_to(upload_dir))
        attachment = Attachment(stored_path=str(relative), thumbnail_path=thumb, original_name=name,
                                content_type=content_type, size=size, width=width, height=height)
        sent = send(session, replace(outgoing, body=name, kind=file_type.kind, attachment=attachment), admit)
    except BaseException:  # nothing half-stored: no file without its message
        _remove(target, thumb_path)
        raise
    if sent.repeated:  # a retry of an upload already stored: the earlier copy is the message's
        _remove(target, thumb_path)
    return sent


def _remove(target: Path, thumb_path: Path | None) -> None:
    target.unlink(missing_ok=True)
    if thumb_path is not None:
        thumb_path.unlink(missing_ok=True)
