"""Files and images in conversations: the type is decided from the file's own bytes, never from its name
or the browser's claim; files are stored under UPLOAD_DIR/YYYY/MM/DD/ with a random name."""

from __future__ import annotations

import os
import secrets
import unicodedata
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePath
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError
from sqlalchemy.orm import Session

from app.chat.errors import ChatError, InvalidInput
from app.chat.messages import Admit, Outgoing, Sent, send
from app.db.models import Attachment, utcnow
from app.i18n import gettext as _

THUMBNAIL_SIZE = 480
MAX_NAME_LENGTH = 200
SNIFF_BYTES = 8192
Image.MAX_IMAGE_PIXELS = 50_000_000  # refuse decompression bombs


class UnsupportedType(ChatError):
    """Not an allowed type, or the bytes do not match the name (415)."""


class TooLarge(ChatError):
    """Larger than the configured limit (413)."""


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
MARKUP_HINTS = (b"<html", b"<!doctype", b"<script", b"<svg", b"<?xml", b"<body", b"<iframe", b"<head")


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


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 4:  # not merely a character cut at the end of the sample
            return False
    lowered = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return not any(hint in lowered[:1024] for hint in MARKUP_HINTS)


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


def sniff(file: BinaryIO, name: str) -> str:
    """The type key of TYPES from the bytes; the name only tells apart types whose bytes are alike
    (doc/xls share one container, txt/csv are both text). Raises UnsupportedType."""
    file.seek(0)
    head = file.read(SNIFF_BYTES)
    file.seek(0)
    ext = _extension(name)
    if head.startswith(b"\xff\xd8\xff"):
        key = "jpeg"
    elif head.startswith(b"\x89PNG\r\n\x1a\n"):
        key = "png"
    elif head[:6] in (b"GIF87a", b"GIF89a"):
        key = "gif"
    elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        key = "webp"
    elif head.startswith(b"%PDF-"):
        key = "pdf"
    elif head.startswith(OLE2_MAGIC):
        key = "xls" if ext == ".xls" else "doc"
    elif head.startswith(b"PK\x03\x04"):
        key = _zip_flavour(file)
        file.seek(0)
    elif _looks_like_text(head):
        key = "csv" if ext == ".csv" else "txt"
    else:
        key = ""
    if key not in TYPES:
        raise UnsupportedType(
            _("不支持这种文件类型。可以发送图片（JPEG、PNG、GIF、WebP）和 PDF、Word、Excel、TXT、CSV、ZIP 文件。")
        )
    if ext not in TYPES[key].extensions:
        raise UnsupportedType(_("文件内容与文件名不符：内容是 {kind}，文件名却是“{name}”。").format(
            kind=key.upper(), name=name))
    return key


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            image.verify()  # a truncated or hostile file fails here
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise UnsupportedType(_("图片已损坏，无法显示。")) from error


def _make_thumbnail(path: Path, target: Path) -> tuple[int, int]:
    """Saved in the format its name says (.png or .jpg), since the name decides the type it is served as."""
    as_png = target.suffix == ".png"
    with Image.open(path) as image:
        image.seek(0)
        frame = image.convert("RGBA" if as_png else "RGB")
        frame.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        if as_png:
            frame.save(target, "PNG", optimize=True)
        else:
            frame.save(target, "JPEG", quality=82)
        return frame.size


def save_upload(session: Session, upload_dir: Path, outgoing: Outgoing, file: BinaryIO, max_bytes: int,
                admit: Admit | None = None) -> Sent:
    """Check the file (size in bytes, type from its bytes, images decoded), write it (and a thumbnail) under
    `upload_dir`, then send it as an image or file message named `outgoing.body` through `send`.
    Raises InvalidInput (empty), TooLarge, UnsupportedType, or what `send` raises; nothing is left on disk then."""
    name = display_name(outgoing.body)
    file.seek(0, os.SEEK_END)
    size = file.tell()
    file.seek(0)
    if size == 0:
        raise InvalidInput(_("文件是空的。"))
    if size > max_bytes:
        raise TooLarge(_("文件太大：最大 {mb} MB。").format(mb=max_bytes // (1024 * 1024)))
    key = sniff(file, name)
    file_type = TYPES[key]
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
            width, height = _image_size(target)
            suffix = ".thumb.png" if key in ("png", "gif", "webp") else ".thumb.jpg"
            thumb_path = target.with_name(target.stem + suffix)
            _make_thumbnail(target, thumb_path)
            thumb = str(thumb_path.relative_to(upload_dir))
        attachment = Attachment(stored_path=str(relative), thumbnail_path=thumb, original_name=name,
                                content_type=file_type.content_type, size=size, width=width, height=height)
        return send(session, replace(outgoing, body=name, kind=file_type.kind, attachment=attachment), admit)
    except BaseException:  # nothing half-stored: no file without its message
        target.unlink(missing_ok=True)
        if thumb_path is not None:
            thumb_path.unlink(missing_ok=True)
        raise
