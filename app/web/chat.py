"""The chat app of buyers, merchants and support: pages, fragments and the POSTs that change things."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from anyio import to_thread
from litestar import Controller, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.enums import MediaType, RequestEncodingType
from litestar.exceptions import (
    ClientException,
    NotFoundException,
    PermissionDeniedException,
    TooManyRequestsException,
)
from litestar.params import Body, QueryParameter
from litestar.response import Redirect, Template
from sqlalchemy.orm import Session

from app.chat import audit, consulting, links, quick_replies
from app.chat import conversations as convs
from app.chat import messages as msgs
from app.chat.errors import Forbidden, InvalidInput
from app.chat.paging import id_from
from app.chat.people import MAX_ID_LENGTH, can_talk, get_person_detached, get_user, may_sign_in, upsert_user
from app.chat.recall import recall as recall_message
from app.chat.sessions import (
    end_sessions,
    live_owners,
    member_audience,
    session_key,
    session_owner,
    start_session,
)
from app.config import Settings
from app.db.models import User
from app.i18n import gettext as _
from app.realtime import signout
from app.realtime.bus import TYPING_EVERY_SECONDS, Delivery
from app.web import bodies
from app.web.audit_gate import record_unauthenticated
from app.web.delivery import Work, admit, client_key, send_and_deliver
from app.web.deps import (
    PERSON_DEPENDENCIES,
    Db,
    Me,
    PathId,
    QueryValue,
    Writer,
    current_admin,
    current_person,
    parse_id,
)
from app.web.errors import public_error
from app.web.identity import (
    SESSION_MAX_AGE,
    acting_entry,
    navigation_from_this_site,
    read_admin_cookie,
    read_session,
    set_session,
)
from app.web.orders_panel import orders_context

TokenValue = Annotated[str | None, QueryParameter(required=False, max_length=links.MAX_TOKEN_LENGTH)]
T = TypeVar("T")


def client_address(request: Request) -> str:
    """The client's IP address (the proxy's unless it is in KEFU_TRUSTED_PROXIES), or "" when unknown."""
    return request.client.host if request.client else ""


def other_person_signed_in(request: Request, db: Session, user_id: str) -> User | None:
    """The person who last signed in in this browser, with a live session, other than `user_id`; else the signed-in
    admin (whose tabs a new person would act in too); or None."""
    session = read_session(request)
    live = live_owners(db, session.tokens) - {user_id}
    last = next((uid for uid in reversed(session.people) if uid in live), None)
    if last is None and (admin := current_admin(request, db)) is not None:
        last = admin.user_id
    return get_user(db, last) if last else None


def contactable(db: Session, me: User, target: str) -> User:
    """The person `me` asks to talk to: 404 page for no such person (or an admin), 400 for a pair that may not
    talk (two buyers)."""
    peer = get_user(db, target[:MAX_ID_LENGTH])
    if peer is None or peer.role == "admin":
        raise public_error(NotFoundException, _("找不到要联系的人：{target}").format(target=target[:MAX_ID_LENGTH]))
    if me.id == peer.id or not can_talk(me.role, peer.role):
        raise public_error(ClientException, _("{me}和{peer}之间不能发起会话。").format(me=me.name, peer=peer.name))
    return peer


def start_conversation(state: State, db: Session, me: User, peer: User) -> convs.Conversation:
    """A new conversation of `me` with `peer`, committed; 429 past the limit of new conversations per person
    (someone else's list is not a place to appear in by the hundred)."""
    limit, window = state.settings.conversation_limit
    wait = state.limiter.retry_after(f"conversation:{me.id}", limit, window)
    if wait is not None:
        text = _("新会话太多了：{window} 分钟内最多 {limit} 个，请 {wait} 秒后再试。").format(
            window=int(window // 60), limit=limit, wait=wait)
        raise TooManyRequestsException(detail=text, headers={"Retry-After": str(wait)}, extra={"public": True})
    conversation = convs.get_or_create_conversation(db, me, peer)
    db.commit()
    return conversation


def open_for_sign_in(db: Session, user_id: str, target: str) -> None:
    """The conversation a sign-in link names (its `target`), created when the pair may talk; else nothing, and the
    chat page that follows says what is wrong."""
    me, peer = get_user(db, user_id), get_user(db, target[:MAX_ID_LENGTH])
    if me is not None and peer is not None and peer.role != "admin" and me.id != peer.id \
            and can_talk(me.role, peer.role):
        convs.get_or_create_conversation(db, me, peer)


def confirm_page(token: str, target: str | None, current: User, identity: links.LinkIdentity) -> Response:
    """Asks before a sign-in link from another site makes this browser act for someone else."""
    context = {"token": token, "target": target or "", "current": current, "incoming": identity}
    return Template("sign_in_confirm.html", context=context, headers={"Cache-Control": "no-store"})


def unread_snapshot(db: Session, build: Callable[[], T]) -> tuple[T, int]:
    """`build()` (which reads counts or list items) and `as_of`, the newest message id its reads account for.

    The browser adds to server counts only messages newer than what they include, so the two must agree. On
    MariaDB the transaction's snapshot makes them agree; SQLite reads each statement afresh, so `build` is run
    again (at most three times) when a message was stored while it ran."""
    for _attempt in range(3):
        as_of = msgs.latest_message_id(db)
        result = build()
        if msgs.latest_message_id(db) == as_of:
            break
        db.expire_all()
    return result, as_of


def page_context(request: Request, db: Session, me: User, open_cid: int | None, at: int | None = None
                 ) -> dict[str, Any]:
    """Everything the chat page shows: the list, the open thread and its peer, unread total, presence.

    Rendering reads nothing: the page's script marks read what has been on the screen (`read`)."""
    presence = request.app.state.presence

    def _build() -> tuple[list[convs.ConversationItem], convs.ListCursor | None, int]:
        items, cursor = convs.list_conversations(db, me.id)
        return items, cursor, convs.total_unread(db, me.id)

    # last_event_id is read first: the stream replays anything newer
    (items, cursor, total), last_event_id = unread_snapshot(db, _build)
    open_thread = thread_context(request, db, me, open_cid, at) if open_cid is not None else None
    context: dict[str, Any] = {
        "me": me,
        "items": items,
        "next_cursor": cursor.encode() if cursor else None,
        "total_unread": total,
        "last_event_id": last_event_id,
        "acting_as": me.id,
        "online": presence.online({item.peer.id for item in items}),
        "open": open_thread,
        "support": platform_support(request.app.state.settings, db, me),
        **quick_context(db, me, open_cid),
    }
    if open_thread is not None:
        context["online"] |= presence.online({open_thread["peer"].id})
    return context


def platform_support(settings: Settings, db: Session, me: User) -> User | None:
    """The platform's support person (KEFU_SUPPORT_USER) when `me` may reach them from the list's "联系平台客服":
    a buyer or merchant, and the configured person exists as support; else None (no entry is shown)."""
    if me.role not in ("buyer", "merchant"):
        return None
    support = get_user(db, settings.support_user)
    return support if support is not None and support.role == "support" else None


def thread_context(request: Request, db: Session, me: User, cid: int, at: int | None = None) -> dict[str, Any]:
    """The open conversation: its latest messages (or, with `at`, the messages around that one: `has_newer` then
    says more follow), the peer, and both read watermarks. NotFound for an `at` not of this conversation.

    Opening a conversation does not read it: a page may be rendered in a hidden tab, or scrolled away from
    the new messages. The page's script reports what was on the screen with `POST /chat/c/{cid}/read`."""
    presence = request.app.state.presence
    item = convs.conversation_item(db, cid, me.id)
    has_newer = False
    if at is None:
        messages, has_more = msgs.latest_messages(db, cid)
    else:
        messages, has_more, has_newer = msgs.messages_around(db, cid, at)
    return {
        "item": item,
        "peer": item.peer,
        "messages": messages,
        "has_more": has_more,
        "at": at,
        "has_newer": has_newer,
        "my_last_read": convs.get_membership(db, cid, me.id).last_read_message_id,
        "senders": {me.id: me, item.peer.id: item.peer},
        "peer_online": presence.is_online(item.peer.id),
        "evidence": item.conversation.support_id == me.id,  # the platform's member sees recalled originals
        "orders_panel": orders_context(db, me, item.conversation),  # the buyer's orders beside it, for who may
        "consulting": consulting.pending(db, cid, me.id),  # (key, product card) the person asks about, or None
    }


def quick_context(db: Session, me: User, open_cid: int | None) -> dict[str, Any]:
    """The quick-reply panel's part of a template context: the person's replies (none for buyers), the open
    conversation's id, and no error."""
    return {"quick_replies": quick_replies.list_replies(db, me), "quick_cid": open_cid, "quick_error": None}


def total_headers(db: Session, user_id: str) -> dict[str, str]:
    """The person's unread total as response headers, with the newest message id it accounts for."""
    total, as_of = unread_snapshot(db, lambda: convs.total_unread(db, user_id))
    return {"X-Kefu-Total-Unread": str(total), "X-Kefu-As-Of": str(as_of)}


def message_page_context(me: User, item: convs.ConversationItem, messages: list[Any]) -> dict[str, Any]:
    """The context shared by the fragments of a page of a conversation's messages, older or newer: the reader, the
    conversation id, the messages, both senders and the peer's read watermark (for 已读)."""
    return {"me": me, "cid": item.id, "messages": messages, "senders": {me.id: me, item.peer.id: item.peer},
            "peer_last_read": item.peer_last_read, "evidence": item.conversation.support_id == me.id}


def text_sender(request: Request, state: State, raw_cid: str, body: str | None,
                raw_reply_to: str | None = None) -> Work:
    """The work of sending a typed message (quoting message `raw_reply_to` when given: InvalidInput naming the field
    `reply_to` unless it is an id), for `send_and_deliver` (runs in its worker thread)."""

    def _work() -> tuple[msgs.Sent, User]:
        with state.sessions() as db:
            me = current_person(request, db, write=True, lookup=get_person_detached)
            reply_to = id_from(raw_reply_to) if raw_reply_to else None
            if raw_reply_to and reply_to is None:
                raise InvalidInput(_("引用的消息不在这个会话里。"), field="reply_to")
            outgoing = msgs.Outgoing(parse_id(raw_cid), me.id, body, client_key=client_key(request),
                                     reply_to=reply_to)
            return msgs.send(db, outgoing, admit(state, "message")), me

    return _work


def typing_parties(request: Request, db: Session, raw_cid: str) -> tuple[str, int, tuple[str, ...], bool]:
    """(the typist, the conversation id, its members, whether the one-query check said yes) for a typing
    notice: one query in the usual case (`member_audience`); when that says no, or an admin is signed in here too,
    the usual checks raise why (401, 403, 404), as for any write."""
    entry = acting_entry(request)
    quick_id = id_from(raw_cid) if entry is not None and read_admin_cookie(request) is None else None
    if entry is not None and quick_id is not None:
        members = member_audience(db, entry[1], entry[0], quick_id)
        if members is not None:
            return entry[0], quick_id, members, True
    typist = current_person(request, db, write=True).id
    conversation_id = parse_id(raw_cid)
    convs.get_membership(db, conversation_id, typist)
    return typist, conversation_id, convs.participants(convs.get_conversation(db, conversation_id)), False


def typing_permit(request: Request, state: State, raw_cid: str) -> tuple[str, int, tuple[str, ...]] | None:
    """(the typist, the conversation id, its participants) from a typing permit this process holds for the request's
    session (app.realtime.typing: granted after a database check, for a few seconds), else None. No query."""
    entry = acting_entry(request)
    conversation_id = id_from(raw_cid)
    if entry is None or conversation_id is None or read_admin_cookie(request) is not None:
        return None
    participants = state.bus.typing_permits.participants(session_key(entry[1]), entry[0], conversation_id)
    return None if participants is None else (entry[0], conversation_id, participants)


def refuse_typing_flood(request: Request, state: State) -> None:
    """TooManyRequestsException (429, Retry-After) when the person the request's signed cookie names has posted more
    typing notices than Settings.typing_limit allows (counted in this process: app.main's typing_limiter): a flood
    costs a signature check and a counter, no query and no round trip. Requests naming no one go on to be refused
    (401) by the usual check."""
    entry = acting_entry(request)
    if entry is None:
        return
    limit, window = state.settings.typing_limit
    wait = state.typing_limiter.retry_after(f"typing-posts:{entry[0]}", limit, window)
    if wait is not None:
        raise TooManyRequestsException(detail=_("输入状态发送太频繁了。"), headers={"Retry-After": str(wait)},
                                       extra={"public": True})


class ChatController(Controller):
    path = "/chat"
    include_in_schema = False  # web pages; the OpenAPI document is for /api/v1
    dependencies = PERSON_DEPENDENCIES

    @get("/", sync_to_thread=True, name="chat")
    def chat_page(
        self,
        request: Request,
        state: State,
        db: Db,
        user_id: QueryValue = None,
        token: TokenValue = None,  # a link's token: as long as links.MAX_TOKEN_LENGTH
        target: QueryValue = None,
        target_user_id: QueryValue = None,
    ) -> Response:
        """GET /chat: the chat page of the person the tab acts for, with `target`'s conversation open (started when
        there is none; coming from another site, a page asks first). 401 when no one is signed in, 403 for an admin,
        404 or 400 for a `target` unknown or not allowed to talk with them, 429 past the limit of new conversations.
        `user_id` signs a demo person in (403 with the demo off, 404 for no such person) and `token` a sign-in link
        (403 when invalid or expired; from another site while someone else is signed in here, a page asks first):
        then 303 to /chat. `target_user_id` is another name for `target`."""
        target = target or target_user_id
        if user_id is not None:
            return self._demo_sign_in(request, state, db, user_id, target)
        if token is not None:
            return self._link_sign_in(request, state, db, token, target)
        me = current_person(request, db)
        open_cid = None
        if target:
            peer = contactable(db, me, target)
            conversation = convs.find_conversation(db, me.id, peer.id)
            if conversation is None:
                if not navigation_from_this_site(request):  # a GET from another site changes nothing: ask
                    return Template("start_confirm.html", context={"me": me, "peer": peer})
                conversation = start_conversation(state, db, me, peer)
            open_cid = conversation.id
        return Template("chat.html", context=page_context(request, db, me, open_cid))

    @post("/start", sync_to_thread=True, request_max_body_size=bodies.SMALL_FORM, name="chat:start")
    def start(self, state: State, db: Db, writer: Writer,
              data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]) -> Redirect:
        """The question page's "开始会话": starts the conversation with `target` (CSRF-checked) and opens it."""
        peer = contactable(db, writer, data.get("target") or "")
        if convs.find_conversation(db, writer.id, peer.id) is None:
            start_conversation(state, db, writer, peer)
        return Redirect("/chat", query_params={"target": peer.id, "as": writer.id}, status_code=303)

    def _link_sign_in(self, request: Request, state: State, db: Db, token: str, target: str | None,
                      confirmed: bool = False) -> Response:
        """A signed link from `kefu link` or the marketplace: creates or updates the person, then drops the
        token from the address bar. When someone else is signed in in this browser and the link comes from
        another site (login CSRF: an attacker's own link would make the victim's later tabs act for the
        attacker), it asks first (`confirmed`: the person said yes on that page)."""
        try:
            identity = links.read_token(state.settings.secret_key, token)
            existing = get_user(db, identity.user_id)
            if existing is not None and not may_sign_in(existing):
                raise Forbidden("not a person who signs in by link")
        except Forbidden as error:
            record_unauthenticated(state, db, "link.refused", "?", client_address(request), str(error))
            db.commit()
            raise public_error(PermissionDeniedException, _("登录链接无效或已过期。")) from error
        if not confirmed and not navigation_from_this_site(request):
            current = other_person_signed_in(request, db, identity.user_id)
            if current is not None:
                return confirm_page(token, target, current, identity)
        upsert_user(db, identity.user_id, identity.name, identity.role)
        audit.record(db, "link.sign_in", identity.user_id, client_address(request), f"role={identity.role}")
        opened = target or identity.target
        product = identity.product if opened == identity.target else None  # the product is about the link's target
        return self._signed_in(request, state, db, identity.user_id, opened, product)

    def _signed_in(self, request: Request, state: State, db: Db, user_id: str, target: str | None,
                   product: dict[str, Any] | None = None) -> Response:
        """Signs `user_id` in in this browser (a new server-side session, unless their session here is live)
        and opens the chat as them, showing `product` (a signed link's) in the conversation with `target`; commits."""
        if target:  # the signed link (or the demo) says whom to talk to: that conversation is opened here
            open_for_sign_in(db, user_id, target)
            if product is not None:
                consulting.offer(db, user_id, target, product)
        session = read_session(request)
        token = session.token_of(user_id)
        if token is None or session_owner(db, token) != user_id:
            token = start_session(db, user_id, SESSION_MAX_AGE)
        session, dropped = session.with_person(user_id, token)
        ended = end_sessions(db, dropped)  # the oldest people past the limit: their copies of the cookie end too
        db.commit()
        # told from the event loop once the answer is sent (the announcement needs no worker thread to wait)
        told = BackgroundTask(signout.announce, state.bus, [key for _uid, key in ended],
                              signout.channels_of((uid for uid, _key in ended), admins=False))
        query = {"target": target} if target else {}
        query["as"] = user_id  # the page acts for this person whoever signs in later in this browser
        response = Redirect("/chat", query_params=query, status_code=303, background=told)
        return set_session(response, request, session)

    def _demo_sign_in(self, request: Request, state: State, db: Db, user_id: str,
                      target: str | None) -> Response:
        if not state.settings.demo:
            raise public_error(PermissionDeniedException, _("演示登录已关闭。请通过商城给你的链接进入客服。"))
        person = get_user(db, user_id)
        if not may_sign_in(person):
            raise public_error(NotFoundException, _("没有这个演示用户：{user_id}").format(user_id=user_id))
        assert person is not None
        return self._signed_in(request, state, db, person.id, target)

    @post("/sign-in", sync_to_thread=True, request_max_body_size=bodies.SMALL_FORM, name="chat:sign-in")
    def confirm_sign_in(
        self,
        request: Request,
        state: State,
        db: Db,
        data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Response:
        """The "continue" button of the page that asks before a link from another site signs someone else in
        (CSRF-protected, like every POST)."""
        token = (data.get("token") or "")[: links.MAX_TOKEN_LENGTH + 1]
        target = (data.get("target") or "")[:200] or None
        return self._link_sign_in(request, state, db, token, target, confirmed=True)

    @get("/c/{cid:str}", sync_to_thread=True, name="chat:conversation")
    def conversation_page(self, request: Request, db: Db, me: Me, cid: PathId, at: QueryValue = None) -> Response:
        """GET /chat/c/{cid}: the chat page with the conversation open (htmx: the open conversation and the quick-reply
        panel, _open_conversation.html); marks nothing read. `at` (a message id) opens it at that message (a search
        result), with newer messages loading below. 401 when not signed in, 403 for a non-participant or an admin, 404
        for no such conversation or an `at` not of it."""
        conversation_id = parse_id(cid)
        at_id = parse_id(at) if at else None
        convs.get_membership(db, conversation_id, me.id)
        if request.htmx:  # htmx asks for the fragment, not the whole page
            context = {
                "me": me,
                "open": thread_context(request, db, me, conversation_id, at_id),
                "acting_as": me.id,
                **quick_context(db, me, conversation_id),
            }
            return Template("_open_conversation.html", context=context)
        return Template("chat.html", context=page_context(request, db, me, conversation_id, at_id))

    @get("/c/{cid:str}/messages", sync_to_thread=True, name="chat:older")
    def older_messages(self, db: Db, me: Me, cid: PathId, before: QueryValue = None) -> Response:
        """GET /chat/c/{cid}/messages: the fragment of the messages before message id `before` (the latest without it).
        401 when not signed in, 403 for a non-participant or an admin, 404 for no such conversation or an id that is not
        one."""
        conversation_id = parse_id(cid)
        item = convs.conversation_item(db, conversation_id, me.id)
        before_id = parse_id(before) if before else None
        messages, has_more = msgs.messages_before(db, conversation_id, before_id)
        context = {**message_page_context(me, item, messages), "has_more": has_more}
        return Template("_older_messages.html", context=context)

    @post("/c/{cid:str}/messages", status_code=201, request_max_body_size=bodies.MESSAGE, name="chat:send")
    async def send(
        self,
        request: Request,
        state: State,
        cid: PathId,
        data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Response:
        """POST /chat/c/{cid}/messages (form field `body`, optional Idempotency-Key): 201 with the message's HTML,
        delivered live; a refusal shown in the composer (422 for text or a key not accepted, 429 with Retry-After, 503
        when the send took too long); 401 when not signed in, 403 for a non-participant or an admin, 404 for no such
        conversation."""
        # The busiest route: one trip to a worker thread for the database, then publish from the event loop.
        return await send_and_deliver(state, text_sender(request, state, cid, data.get("body"), data.get("reply_to")))

    @post("/c/{cid:str}/messages/{mid:str}/recall", status_code=200, request_max_body_size=bodies.SMALL_FORM,
          name="chat:recall")
    async def recall(self, request: Request, state: State, cid: PathId, mid: PathId) -> Response:
        """POST /chat/c/{cid}/messages/{mid}/recall: the sender takes message `mid` back within
        recall.RECALL_SECONDS (2 minutes). 200 with the tombstone's HTML, both sides' streams hear `recall`;
        recalling it again is 200 and changes nothing. 409 after the window, 403 for someone else's message, a
        notice, a non-participant or an admin, 404 for no such message in that conversation."""

        def _work() -> Delivery:
            with state.sessions() as db:
                me = current_person(request, db, write=True)
                conversation_id = parse_id(cid)
                convs.get_membership(db, conversation_id, me.id)
                return state.bus.recall_delivery(recall_message(db, conversation_id, parse_id(mid), me.id))

        delivery = await to_thread.run_sync(_work)
        await state.bus.deliver(delivery)
        return Response(delivery.html, media_type=MediaType.HTML)

    @post("/c/{cid:str}/typing", status_code=204, request_max_body_size=bodies.SMALL_FORM, name="chat:typing")
    async def typing(self, request: Request, state: State, cid: PathId) -> Response[None]:
        """POST /chat/c/{cid}/typing: the person is typing; the other participant's streams (and the admins') hear
        `typing`, at most once every TYPING_EVERY_SECONDS (3) per person and conversation in each process (more
        often: 204, told to nobody). Never stored. 401, 403 for a non-participant or an admin, 404 for no such
        conversation; 429 with Retry-After past Settings.typing_limit for the person the cookie names, answered before
        any database work."""
        refuse_typing_flood(request, state)

        def _checked() -> tuple[str, int, tuple[str, ...], bool]:
            with state.sessions() as db:
                return typing_parties(request, db, cid)

        permitted = typing_permit(request, state, cid)
        if permitted is None:
            typist, conversation_id, participants, quick = await to_thread.run_sync(_checked)
            entry = acting_entry(request)
            if quick and entry is not None:  # the next notices of this session here need no query for a while
                state.bus.typing_permits.grant(session_key(entry[1]), typist, conversation_id, participants)
        else:
            typist, conversation_id, participants = permitted
        if state.typing_limiter.retry_after(f"typing:{typist}:{conversation_id}", 1, TYPING_EVERY_SECONDS) is None:
            await state.bus.deliver(state.bus.typing_delivery(conversation_id, participants, typist))
        return Response(None, status_code=204)

    @post("/c/{cid:str}/read", status_code=204, request_max_body_size=bodies.SMALL_FORM, name="chat:read")
    async def read(
        self,
        request: Request,
        state: State,
        cid: PathId,
        data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Response[None]:
        """What the person has seen: `up_to` (a message id; missing means everything). 204, with the person's
        new unread total in `X-Kefu-Total-Unread` (and `X-Kefu-As-Of`, the newest message id it accounts for).
        A watermark that moved is told to both sides from the event loop."""

        def _work() -> tuple[Delivery | None, dict[str, str]]:
            with state.sessions() as db:
                me = current_person(request, db, write=True)
                conversation_id = parse_id(cid)
                raw = data.get("up_to")
                moved = convs.mark_read(db, conversation_id, me.id, parse_id(raw) if raw else None)
                db.commit()
                delivery = None
                if moved is not None:
                    participants = convs.participants(convs.get_conversation(db, conversation_id))
                    delivery = state.bus.read_delivery(conversation_id, participants, me.id, moved)
                return delivery, total_headers(db, me.id)

        delivery, headers = await to_thread.run_sync(_work)
        if delivery is not None:
            await state.bus.deliver(delivery)
        return Response(None, status_code=204, headers=headers)

    @get("/c/{cid:str}/item", sync_to_thread=True, name="chat:item")
    def list_item(self, request: Request, db: Db, me: Me, cid: PathId) -> Template:
        """One conversation of the list as its reader sees it, carrying the reader's unread total."""
        conversation_id = parse_id(cid)
        (item, total), as_of = unread_snapshot(
            db, lambda: (convs.conversation_item(db, conversation_id, me.id), convs.total_unread(db, me.id))
        )
        online = request.app.state.presence.online({item.peer.id})
        context = {
            "item": item,
            "online": online,
            "acting_as": me.id,
            "item_total": {"total_unread": total, "as_of": as_of},
        }
        return Template("_conversation_item.html", context=context)

    @get("/list", sync_to_thread=True, name="chat:list")
    def list_page(self, request: Request, db: Db, me: Me, cursor: QueryValue = None) -> Template:
        """A page of the list; the first page also carries the unread total (the page's title after a reconnect)."""
        try:
            before = convs.ListCursor.decode(cursor) if cursor else None
        except InvalidInput as error:
            raise NotFoundException() from error

        def _build() -> tuple[list[convs.ConversationItem], convs.ListCursor | None, int | None]:
            items, next_cursor = convs.list_conversations(db, me.id, before)
            return items, next_cursor, convs.total_unread(db, me.id) if before is None else None

        (items, next_cursor, total), as_of = unread_snapshot(db, _build)
        context = {
            "items": items,
            "next_cursor": next_cursor.encode() if next_cursor else None,
            "online": request.app.state.presence.online({item.peer.id for item in items}),
            "acting_as": me.id,
            "list_total": None if total is None else {"total_unread": total, "as_of": as_of},
        }
        return Template("_conversation_page.html", context=context)
