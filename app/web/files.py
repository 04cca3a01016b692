"""Uploading files into a conversation, and downloading them (participants and admins only)."""

from __future__ import annotations

from pathlib import Path

from anyio import to_thread
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State, UploadFile
from litestar.exceptions import NotAuthorizedException, NotFoundException
from litestar.response import File
from sqlalchemy.orm import Session

from app.chat.cards import THUMBNAIL_KEY, from_json
from app.chat.conversations import any_takes_part
from app.chat.errors import InvalidInput
from app.chat.files import save_upload
from app.chat.messages import Outgoing, Sent
from app.db.models import Attachment, Message, User
from app.i18n import gettext as _
from app.web.delivery import admit, client_key, send_and_deliver
from app.web.deps import Db, PathId, current_admin, parse_id, signed_in_people, writer_in

SANDBOX_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"
FILE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": SANDBOX_CSP,
    "Cache-Control": "no-store",  # a shared computer's browser keeps no one's files
}


def max_upload_bytes(state: State) -> int:
    """The largest upload in bytes: KEFU_MAX_UPLOAD_MB mebibytes (1024 × 1024 bytes each)."""
    return int(state.settings.max_upload_mb) * 1024 * 1024


class FilesController(Controller):
    path = "/"
    include_in_schema = False  # web pages; the OpenAPI document is for /api/v1

    @post("/chat/c/{cid:str}/files", status_code=201, name="chat:upload")
    async def upload(self, request: Request, state: State, cid: PathId) -> Response:
        """The paperclip: multipart field `file`. Who asks is checked (401, 403, 404) before the body is read;
        the form is parsed by the app's request class (bytes it cannot decode: 400)."""

        def _writer() -> tuple[User, int]:
            with state.sessions() as db:
                me, conversation = writer_in(request, db, cid)
                return me, conversation.id

        me, conversation_id = await to_thread.run_sync(_writer)
        upload = (await request.form()).get("file")

        def _work() -> tuple[Sent, User]:
            if not isinstance(upload, UploadFile):
                raise InvalidInput(_("请选择要发送的文件。"))
            with state.sessions() as db:
                outgoing = Outgoing(conversation_id, me.id, upload.filename, client_key=client_key(request))
                sent = save_upload(db, Path(state.settings.upload_dir), outgoing, upload.file,
                                   max_upload_bytes(state), admit(state, "upload"), admit(state, "decode"))
                return sent, me

        return await send_and_deliver(state, _work)

    @get("/files/{mid:str}", sync_to_thread=True, name="file")
    def download(self, request: Request, state: State, db: Db, mid: PathId) -> File:
        """GET /files/{mid}: the file of message `mid`, images inline and other files as attachments (sandboxing CSP,
        no-store). 401 when no one is signed in in this browser, 404 for no such file, and unless an admin or a
        participant is signed in here (participants: 404 once the message is recalled)."""
        return self._send(request, state, db, parse_id(mid), thumbnail=False)

    @get("/files/{mid:str}/thumb", sync_to_thread=True, name="file:thumb")
    def thumbnail(self, request: Request, state: State, db: Db, mid: PathId) -> File:
        """GET /files/{mid}/thumb: the image's thumbnail (PNG or JPEG), or the file itself when it has none; answers as
        `download` does."""
        return self._send(request, state, db, parse_id(mid), thumbnail=True)

    @get("/cards/{mid:str}/image", sync_to_thread=True, name="card:image")
    def card_image(self, request: Request, state: State, db: Db, mid: PathId) -> File:
        """GET /cards/{mid}/image: the thumbnail Kefu keeps of card `mid`'s picture (PNG or JPEG), to whoever may see
        the card's message (as `download`: 401, else 404 for no such picture or someone who may not see it)."""
        if not signed_in_people(request, db) and current_admin(request, db) is None:
            raise NotAuthorizedException()
        message = db.get(Message, parse_id(mid))
        card = from_json(message.card) if message is not None else None
        relative = card.get(THUMBNAIL_KEY) if card else None
        if message is None or not relative or not may_see(request, db, message.conversation_id,
                                                          message.recalled_at is not None):
            raise NotFoundException()
        path = _inside(Path(state.settings.upload_dir), relative)
        media_type = "image/png" if relative.endswith(".png") else "image/jpeg"
        return File(path=path, filename="card" + path.suffix, media_type=media_type, content_disposition_type="inline",
                    headers=dict(FILE_HEADERS))

    def _send(self, request: Request, state: State, db: Session, message_id: int, thumbnail: bool) -> File:
        if not signed_in_people(request, db) and current_admin(request, db) is None:
            raise NotAuthorizedException()  # who asks comes first: nothing is told to strangers
        attachment = db.get(Attachment, message_id)
        message = db.get(Message, message_id)
        # someone who may not see the conversation gets what an id without a file gets: which ids carry files of
        # other people's conversations is not theirs to learn
        if attachment is None or message is None or not may_see(request, db, message.conversation_id,
                                                                  message.recalled_at is not None):
            raise NotFoundException()
        relative = attachment.thumbnail_path if thumbnail and attachment.thumbnail_path else attachment.stored_path
        path = _inside(Path(state.settings.upload_dir), relative)
        is_image = message.kind == "image"
        media_type, parameters = attachment.content_type.partition(";")[::2]  # Litestar adds the charset itself
        charset = parameters.partition("charset=")[2].strip() or "utf-8"
        if thumbnail and attachment.thumbnail_path:
            media_type = "image/png" if relative.endswith(".png") else "image/jpeg"
        return File(
            path=path,
            encoding=charset,
            filename=attachment.original_name,
            media_type=media_type,
            content_disposition_type="inline" if is_image else "attachment",
            headers=dict(FILE_HEADERS),
        )


def _inside(upload_dir: Path, relative: str) -> Path:
    """The stored file at `relative` under `upload_dir`; NotFoundException when it is missing or lies outside."""
    root = upload_dir.resolve()
    path = (root / relative).resolve()
    if root not in path.parents or not path.is_file():
        raise NotFoundException()
    return path


def may_see(request: Request, db: Session, conversation_id: int, recalled: bool = False) -> bool:
    """Admins, and any person signed in in this browser who takes part in the conversation (an <img> cannot
    say which of the browser's people it acts for) unless the file's message was `recalled` (then admins only)."""
    if current_admin(request, db) is not None:
        return True
    return not recalled and any_takes_part(db, conversation_id, signed_in_people(request, db))
