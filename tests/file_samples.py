"""Sample files for the upload and download tests, made in memory: real images (Pillow), a minimal PDF, OLE2 and
Office Open XML containers, a ZIP, UTF-8 text; plus the shared steps of uploading one over HTTP."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image

OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def image_bytes(fmt: str, size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 30, 60)) -> bytes:
    """A real image in `fmt` (PNG, JPEG, GIF, WEBP) with a pattern, so it is not a single flat colour."""
    image = Image.new("RGB", size, color)
    for x in range(0, size[0], 8):
        for y in range(0, size[1], 8):
            if (x + y) % 16 == 0:
                image.putpixel((x, y), (255, 255, 255))
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG that claims to be huge (a decompression bomb): a valid header, almost no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(1000)))
            + chunk(b"IEND", b""))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_zeros(width: int, height: int, colour_type: int = 0) -> bytes:
    """A real, complete PNG of `width` × `height` black pixels (grey, or 6: RGBA), compressed row by row: a few
    hundred KB that decode to up to width × height × 4 bytes."""
    channels = {0: 1, 2: 3, 6: 4}[colour_type]
    packer = zlib.compressobj(9)
    row = bytes(1 + width * channels)  # filter byte 0, then the row's zero bytes
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def png_with_truncated_pixels() -> bytes:
    """A PNG whose chunks all have valid checksums but whose pixel data (IDAT) stops halfway."""
    image = image_bytes("PNG", size=(300, 200))
    pixels = zlib.decompress(image[image.index(b"IDAT") + 4:image.index(b"IEND") - 8])
    header = struct.pack(">IIBBBBB", 300, 200, 8, 2, 0, 0, 0)
    half = zlib.compress(pixels)[: len(zlib.compress(pixels)) // 2]
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", half) + _png_chunk(b"IEND", b"")


def gif_bomb(width: int = 9500, height: int = 9500) -> bytes:
    """35 bytes: a GIF whose header claims a `width` × `height` canvas around a single 1×1 frame."""
    screen = struct.pack("<HHBBB", width, height, 0, 0, 0)  # no global colour table
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0)  # image descriptor: a 1×1 frame at 0,0
    return b"GIF89a" + screen + frame + b"\x02\x02\x44\x01\x00" + b"\x3b"


def gif_many_frames(frames: int = 999, width: int = 4000, height: int = 4000) -> bytes:
    """About 23 bytes a frame: `frames` 1×1 frames on a `width` × `height` canvas, each left in place (Pillow composes
    every frame it passes onto the whole canvas: counting them is the costly part)."""
    palette = bytes([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    data = b"GIF89a" + struct.pack("<HHBBB", width, height, 0xF1, 0, 0) + palette
    data += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop for ever
    for n in range(frames):
        control = b"\x21\xf9\x04\x04" + struct.pack("<H", 1) + b"\x00\x00"  # keep the frame; 10 ms
        descriptor = b"\x2c" + struct.pack("<HHHHB", n % width, (n * 7) % height, 1, 1, 0)
        code = 4 | ((1 + n % 3) << 3) | (5 << 6)  # LZW: clear, one colour, end
        data += control + descriptor + bytes([2, 2, code & 0xFF, code >> 8, 0])
    return data + b"\x3b"


def pdf_bytes() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
        b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\n"
        b"trailer<</Root 1 0 R>>\n%%EOF\n"
    )


def ole2_bytes() -> bytes:
    """What .doc and .xls files start with (a Compound File Binary container), padded to a sector."""
    return OLE2_MAGIC + bytes(504) + b"\x00" * 512


def office_xml_bytes(part: str) -> bytes:
    """A DOCX (part "word/document.xml") or XLSX (part "xl/workbook.xml") container."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        archive.writestr(part, '<?xml version="1.0"?><root>报价</root>')
    return out.getvalue()


def zip_bytes() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("说明.txt", "药品清单")
        archive.writestr("清单/价格.csv", "品名,价格\n板蓝根,12.5\n")
    return out.getvalue()


@dataclass(frozen=True)
class Sample:
    name: str
    content: bytes
    kind: str  # the message kind people see: "image" or "file"
    content_type: str  # what the download is sent as (without parameters)


SAMPLES: dict[str, Sample] = {
    "jpeg": Sample("产品照片.jpg", image_bytes("JPEG"), "image", "image/jpeg"),
    "png": Sample("包装.png", image_bytes("PNG"), "image", "image/png"),
    "gif": Sample("动图.gif", image_bytes("GIF"), "image", "image/gif"),
    "webp": Sample("说明书.webp", image_bytes("WEBP"), "image", "image/webp"),
    "pdf": Sample("报价单.pdf", pdf_bytes(), "file", "application/pdf"),
    "doc": Sample("合同.doc", ole2_bytes(), "file", "application/msword"),
    "docx": Sample("合同.docx", office_xml_bytes("word/document.xml"), "file",
                   "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    "xls": Sample("库存.xls", ole2_bytes(), "file", "application/vnd.ms-excel"),
    "xlsx": Sample("库存.xlsx", office_xml_bytes("xl/workbook.xml"), "file",
                   "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    "txt": Sample("备注.txt", "请尽快发货，谢谢！\n第二行 🙂\n".encode(), "file", "text/plain"),
    "csv": Sample("订单.csv", "品名,数量\n板蓝根颗粒,200\n连花清瘟胶囊,50\n".encode(), "file", "text/csv"),
    "zip": Sample("资料.zip", zip_bytes(), "file", "application/zip"),
}


def upload(client: httpx.Client, cid: int, token: str, name: str, content: bytes,
           claimed_type: str = "application/octet-stream") -> httpx.Response:
    """The paperclip's request: multipart field `file`, the CSRF token in the X-CSRFToken header."""
    return client.post(f"/chat/c/{cid}/files", files={"file": (name, content, claimed_type)},
                       headers={"X-CSRFToken": token})


@dataclass
class Party:
    """One participant in their own browser, signed in with the conversation open."""

    user_id: str
    client: httpx.Client
    token: str
    cid: int

    def upload(self, name: str, content: bytes, claimed_type: str = "application/octet-stream") -> httpx.Response:
        return upload(self.client, self.cid, self.token, name, content, claimed_type)


def files_under(directory: Path) -> list[Path]:
    """Every regular file under `directory` (none when it does not exist)."""
    return sorted(p for p in directory.rglob("*") if p.is_file()) if directory.exists() else []
