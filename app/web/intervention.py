"""Platform intervention in a conversation (app.chat.members): asking the platform in, its support person leaving,
and the conversation's transcript (app.chat.transcript) for its members and the admins."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from anyio import to_thread
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.enums import MediaType, RequestEncodingType
from litestar.exceptions import TooManyRequestsException
from litestar.params import Body
from litestar.response import Redirect, Stream, Template
from sqlalchemy.orm import Session

from app.chat import conversations as convs
from app.chat import members, transcript
from app.i18n import gettext as _
from app.realtime.bus import Delivery
from app.web import bodies
from app.web.deps import Db, PathId, current_admin, current_person, parse_id

SHOWN_ON_THE_PAGE = 5000  # messages the printable page lists (the JSON always holds them all)


def back_to(cid: int, user_id: str) -> Redirect:
    """303 to the conversation's page, as the person the page acted for."""
    return Redirect(f"/chat/c/{cid}", query_params={"as": user_id}, status_code=303)


TRANSCRIPTS = (6, 60.0)  # transcripts one person or admin may make a minute: each reads the whole conversation


def may_read_transcript(request: Request, db: Session, conversation_id: int) -> None:
    """An admin, or a member of the conversation (as the page names them), within TRANSCRIPTS a minute; else 401/403
    as for any page, 404 for no such conversation, 429 with Retry-After past the limit (a transcript of 100,000
    messages takes seconds of the server's time)."""
    admin = current_admin(request, db)  # who asks comes first: a stranger learns nothing of which ids exist
    if admin is None:
        reader = current_person(request, db).id
        convs.get_membership(db, conversation_id, reader)
    else:
        convs.get_conversation(db, conversation_id)
        reader = f"admin:{admin.user_id}"
    wait = request.app.state.limiter.retry_after(f"transcript:{reader}", *TRANSCRIPTS)
    if wait is not None:
        raise TooManyRequestsException(detail=_("导出会话记录太频繁了，请 {wait} 秒后再试。").format(wait=wait),
                                       headers={"Retry-After": str(wait)}, extra={"public": True})


def _whole(sessions: Any, conversation_id: int) -> Iterator[bytes]:
    """The transcript's JSON as UTF-8 pieces, read in a session of its own (the request's ends with the handler)."""
    with sessions() as db:
        for chunk in transcript.transcript_chunks(db, conversation_id):
            yield chunk.encode()


class InterventionController(Controller):
    path = "/chat/c/{cid:str}"
    include_in_schema = False  # web pages; the OpenAPI document is for /api/v1

    @post("/intervention", request_max_body_size=bodies.REASON_FORM, name="chat:intervention")
    async def intervention(self, request: Request, state: State, cid: PathId, data: Annotated[
            dict[str, str] | None, Body(media_type=RequestEncodingType.URL_ENCODED)] = None) -> Response:
        """POST /chat/c/{cid}/intervention (form field `reason`): the buyer or the merchant asks the platform in; its
        support person (KEFU_SUPPORT_USER) joins. Every member and the admins hear `member` and the notices. 303 back
        to the conversation; 422 for a missing or too long reason, 403 for anyone but the pair of a buyer–merchant
        conversation (admins too), 404 for no such conversation, 409 when the platform is already in it or no
        support person is set up."""

        def _work() -> tuple[str, members.MemberChange]:
            """In a worker thread: (the asker's id, the committed change)."""
            with state.sessions() as db:
                me = current_person(request, db, write=True)
                change = members.request_intervention(db, parse_id(cid), me.id, state.settings.support_user,
                                                      (data or {}).get("reason"))
                return me.id, change

        me_id, change = await to_thread.run_sync(_work)
        await self._announce(state, change)
        return back_to(change.conversation_id, me_id)

    @post("/leave", request_max_body_size=bodies.SMALL_FORM, name="chat:leave")
    async def leave(self, request: Request, state: State, cid: PathId) -> Response:
        """POST /chat/c/{cid}/leave: the platform's support person ends their intervention and leaves; everyone who
        was in it and the admins hear `member` and the notice. 303 to the conversation list; 403 for anyone else, 404
        for no such conversation."""

        def _work() -> tuple[str, members.MemberChange]:
            """In a worker thread: (the leaver's id, the committed change)."""
            with state.sessions() as db:
                me = current_person(request, db, write=True)
                return me.id, members.leave(db, parse_id(cid), me.id)

        me_id, change = await to_thread.run_sync(_work)
        await self._announce(state, change)
        return Redirect("/chat", query_params={"as": me_id}, status_code=303)

    @staticmethod
    async def _announce(state: State, change: members.MemberChange) -> None:
        """Publish a member change (after its commit): this process's typing permits of the conversation go (the
        next notice asks who the members are now), then the `member` event and the notices."""
        state.bus.typing_permits.forget_conversation(change.conversation_id)
        delivery: Delivery = await to_thread.run_sync(state.bus.member_delivery, change)
        await state.bus.deliver(delivery)

    @get("/transcript.json", sync_to_thread=True, name="chat:transcript-json")
    def transcript_json(self, request: Request, db: Db, cid: PathId) -> Stream:
        """GET /chat/c/{cid}/transcript.json: the transcript's canonical JSON (app.chat.transcript: its SHA-256 is
        the digest the printable page shows), for the members and the admins. 401/403 for others, 404 for no such
        conversation, 413 past transcript.MAX_MESSAGES messages."""
        conversation_id = parse_id(cid)
        may_read_transcript(request, db, conversation_id)
        next(transcript.transcript_chunks(db, conversation_id))  # refused (413) before the response starts
        return Stream(_whole(request.app.state.sessions, conversation_id), media_type=MediaType.JSON,
                      headers={"Content-Disposition": f'attachment; filename="kefu-{conversation_id}.json"'})

    @get("/transcript", sync_to_thread=True, name="chat:transcript")
    def transcript_page(self, request: Request, db: Db, cid: PathId) -> Template:
        """GET /chat/c/{cid}/transcript: the printable transcript, with the SHA-256 digest of its JSON and how to
        recompute it; the first SHOWN_ON_THE_PAGE messages listed. Who may: as for the JSON."""
        conversation_id = parse_id(cid)
        may_read_transcript(request, db, conversation_id)
        digest = transcript.digest_of(transcript.transcript_chunks(db, conversation_id))
        entries = []
        for message, author, attachment in transcript.rows(db, conversation_id):
            if len(entries) >= SHOWN_ON_THE_PAGE:
                break
            entries.append(transcript.entry(message, author, attachment))
        conversation = convs.get_conversation(db, conversation_id)
        return Template("transcript.html", context={"conversation": conversation, "entries": entries,
                                                    "digest": digest, "shown": SHOWN_ON_THE_PAGE})
