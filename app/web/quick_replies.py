"""Quick replies: the owner manages them in the third column (a sheet on a phone) and sends one with a click."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.enums import RequestEncodingType
from litestar.params import Body, QueryParameter
from litestar.response import Template
from sqlalchemy.orm import Session

from app.chat import messages as msgs
from app.chat import quick_replies as replies
from app.chat.errors import InvalidInput
from app.db.models import User
from app.web import bodies
from app.web.delivery import admit, client_key, send_and_deliver
from app.web.deps import PERSON_DEPENDENCIES, Db, Me, PathId, Writer, current_person, parse_id

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]


def panel(db: Session, me: User, cid: int | None, error: str | None = None, status: int = 200) -> Template:
    """The quick-reply panel (_quick_replies.html) of `me`, `cid` being the open conversation, with an `error` line and
    `status` (422 with an error)."""
    context: dict[str, Any] = {"me": me, "quick_replies": replies.list_replies(db, me), "quick_cid": cid,
                               "quick_error": error}
    return Template("_quick_replies.html", context=context, status_code=status)


def open_cid(raw: str | None) -> int | None:
    """The open conversation's id from a form or query value, None when empty; 404 (NotFoundException) when not an
    id."""
    return parse_id(raw) if raw else None


def changed(db: Session, me: User, form: dict[str, str], change: Callable[[], object]) -> Template:
    """The panel after `change` (committed), or with its InvalidInput as the error line (422, nothing changed); the
    open conversation is the form's `cid`."""
    try:
        change()
    except InvalidInput as error:
        db.rollback()
        return panel(db, me, open_cid(form.get("cid")), str(error), 422)
    db.commit()
    return panel(db, me, open_cid(form.get("cid")))


class QuickRepliesController(Controller):
    path = "/chat/quick-replies"
    include_in_schema = False  # web pages; the OpenAPI document is for /api/v1
    dependencies = PERSON_DEPENDENCIES

    @get("/", sync_to_thread=True, name="quick-replies")
    def show(self, db: Db, me: Me,
             cid: Annotated[str | None, QueryParameter(required=False, max_length=20)] = None) -> Template:
        """GET /chat/quick-replies/: the quick-reply panel (empty for buyers), `cid` being the open conversation. 401
        when no one is signed in, 403 for an admin."""
        return panel(db, me, open_cid(cid))

    @post("/", sync_to_thread=True, status_code=200, request_max_body_size=bodies.QUICK_REPLY_FORM,
          name="quick-replies:create")
    def create(self, db: Db, writer: Writer, data: Form) -> Template:
        """POST /chat/quick-replies/ (form `body`, `cid`): adds a quick reply at the end of the list. 200 with the
        panel; 422 with the panel and the error for text not accepted or one reply too many; 403 for buyers and
        admins."""
        return changed(db, writer, data, lambda: replies.create(db, writer, data.get("body")))

    @post("/{rid:str}", sync_to_thread=True, status_code=200, request_max_body_size=bodies.QUICK_REPLY_FORM,
          name="quick-replies:edit")
    def edit(self, db: Db, writer: Writer, rid: PathId, data: Form) -> Template:
        """POST /chat/quick-replies/{rid} (form `body`, `cid`): new text for one's quick reply. 200 with the panel; 422
        with the panel and the error for text not accepted; 403 (not one's own, a buyer, an admin), 404 (no such
        reply)."""
        return changed(db, writer, data, lambda: replies.update(db, writer, parse_id(rid), data.get("body")))

    @post("/{rid:str}/delete", sync_to_thread=True, status_code=200, request_max_body_size=bodies.SMALL_FORM,
          name="quick-replies:delete")
    def delete(self, db: Db, writer: Writer, rid: PathId, data: Form) -> Template:
        """POST /chat/quick-replies/{rid}/delete (form `cid`): deletes one's quick reply. 200 with the panel; 403 (not
        one's own, a buyer, an admin), 404 (no such reply)."""
        replies.delete(db, writer, parse_id(rid))
        db.commit()
        return panel(db, writer, open_cid(data.get("cid")))

    @post("/{rid:str}/move", sync_to_thread=True, status_code=200, request_max_body_size=bodies.SMALL_FORM,
          name="quick-replies:move")
    def move(self, db: Db, writer: Writer, rid: PathId, data: Form) -> Template:
        """POST /chat/quick-replies/{rid}/move (form `direction`: up or down, `cid`): swaps the reply with its neighbour
        (at an end, nothing changes). 200 with the panel; 400 for another direction, 403 (not one's own, a buyer, an
        admin), 404 (no such reply)."""
        replies.move(db, writer, parse_id(rid), data.get("direction", ""))
        db.commit()
        return panel(db, writer, open_cid(data.get("cid")))


class SendQuickReplyController(Controller):
    path = "/chat/c"
    include_in_schema = False  # web pages; the OpenAPI document is for /api/v1

    @post("/{cid:str}/quick-replies/{rid:str}", status_code=201, request_max_body_size=bodies.SMALL_FORM,
          name="quick-replies:send")
    async def send(self, request: Request, state: State, cid: PathId, rid: PathId) -> Response:
        """One click sends it: stored and delivered live like any typed message."""

        def _work() -> tuple[msgs.Sent, User]:
            with state.sessions() as db:
                me = current_person(request, db, write=True)
                reply = replies.get_own(db, me, parse_id(rid))
                outgoing = msgs.Outgoing(parse_id(cid), me.id, reply.body, client_key=client_key(request))
                return msgs.send(db, outgoing, admit(state, "message")), me

        return await send_and_deliver(state, _work)
