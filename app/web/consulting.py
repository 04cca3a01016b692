"""The product a buyer asks about (正在咨询): its card above the composer, and the one click that sends it."""

from __future__ import annotations

from anyio import to_thread
from litestar import Controller, Request, Response, post
from litestar.datastructures import State

from app.chat import card_images, cards, consulting
from app.chat import messages as msgs
from app.chat.errors import NotFound
from app.db.models import User
from app.web import bodies
from app.web.delivery import admit, send_and_deliver
from app.web.deps import PathId, writer_in


class ConsultingController(Controller):
    path = "/chat/c"
    include_in_schema = False  # web pages; the OpenAPI document is for /api/v1

    @post("/{cid:str}/consulting", status_code=201, request_max_body_size=bodies.SMALL_FORM, name="chat:consulting")
    async def send(self, request: Request, state: State, cid: PathId) -> Response:
        """POST /chat/c/{cid}/consulting (form field `key`: the offer shown): sends the product the person asks about
        in this conversation as their product card, once, delivered live (201 with its HTML; its picture fetched as
        for API cards). 404 when that offer is gone (sent already, from this tab or another, or replaced by another
        link); 401, 403, 404 as for any send."""
        key = str((await request.form()).get("key") or "")

        def _offer() -> tuple[User, int, dict[str, object]]:
            with state.sessions() as db:
                me, conversation = writer_in(request, db, cid)
                offer = consulting.pending(db, conversation.id, me.id)
                if offer is None or offer[0] != key:
                    raise NotFound("consulting")
                return me, conversation.id, offer[1]

        me, conversation_id, card = await to_thread.run_sync(_offer)
        source = cards.image_source(card)
        settings = state.settings
        thumbnail = None if source is None else await card_images.thumbnail(
            settings.upload_dir, source, settings.card_image_private_targets, settings.card_image_seconds)

        def _work() -> tuple[msgs.Sent, User]:
            with state.sessions() as db:
                sent = consulting.send_pending(db, conversation_id, me.id, key, thumbnail, admit(state, "message"))
                if sent is None:  # sent meanwhile by another tab
                    raise NotFound("consulting")
                return sent, me

        return await send_and_deliver(state, _work)
