"""The admins' read-only monitor of every conversation, live, and the statistics page."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from anyio import to_thread
from litestar import Controller, Request, Response, get
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, NotFoundException
from litestar.handlers import BaseRouteHandler
from litestar.plugins.htmx import HTMXDetails
from litestar.response import Redirect, Template
from sqlalchemy.orm import Session

from app.chat import audit, stats
from app.chat import messages as msgs
from app.chat.conversations import get_conversation
from app.chat.errors import InvalidInput
from app.chat.monitor import MonitorFilter, MonitorRow, list_all_conversations, monitor_row
from app.chat.paging import ListCursor
from app.chat.people import CHAT_ROLES, get_user, valid_user_id
from app.db.models import AdminAccount, User
from app.web.deps import Db, PathId, QueryValue, current_admin, parse_id


class NotSignedInAsAdmin(Exception):
    """Turned into a redirect to /login for pages (401 for htmx fragments)."""


def require_admin(connection: ASGIConnection, db: Session) -> AdminAccount:
    """The signed-in admin; otherwise 401 for an htmx request (NotAuthorizedException), and for a page
    NotSignedInAsAdmin, which redirects to /login."""
    account = current_admin(connection, db)
    if account is None:
        if HTMXDetails(connection):  # type: ignore[arg-type]  # it reads the headers only
            raise NotAuthorizedException()
        raise NotSignedInAsAdmin()
    return account


async def admins_only(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:
    """The guard of every admin page (AdminController): the signed-in admin, checked in a worker thread, kept as
    `request.state.admin`; anyone else goes to /login (htmx: 401). On the controller, so that no page can forget it."""

    def _check() -> AdminAccount:
        with connection.app.state.sessions() as db:
            return require_admin(connection, db)

    connection.state.admin = await to_thread.run_sync(_check)


def login_redirect(request: Request, _exc: Exception) -> Response:
    """The answer to NotSignedInAsAdmin: 303 to /login, with `next` the requested path and query."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Redirect("/login", query_params={"next": target}, status_code=303)


def parse_filters(role: str | None, person: str | None, q: str | None) -> MonitorFilter:
    """The monitor's filters from its query values, never an error: `role` only when a chat role, `person` (stripped)
    only when a valid user id, `q` stripped and cut to 100 characters; anything else is no filter."""
    return MonitorFilter(
        role=role if role in CHAT_ROLES else None,
        person=person.strip() if person and valid_user_id(person.strip()) else None,
        query=(q or "").strip()[:100] or None,
    )


def presence_of(request: Request, rows: list[MonitorRow]) -> set[str]:
    """Which people of these monitor rows are online (a blocking Redis round trip with KEFU_BROKER_URL)."""
    return request.app.state.presence.online({uid for row in rows for uid in (row.user_a.id, row.user_b.id)})


def thread_context(request: Request, db: Session, cid: int) -> dict[str, Any]:
    """A conversation as an admin sees it; reading it as an admin never marks anything read."""
    row = monitor_row(db, cid)
    if row is None:
        raise NotFoundException()
    messages, has_more = msgs.latest_messages(db, cid)
    return {
        "row": row,
        "messages": messages,
        "has_more": has_more,
        "senders": {row.user_a.id: row.user_a, row.user_b.id: row.user_b},
        "online": presence_of(request, [row]),
    }


class AdminController(Controller):
    path = "/admin"
    include_in_schema = False  # web pages; the OpenAPI document is for /api/v1
    exception_handlers = {NotSignedInAsAdmin: login_redirect}  # noqa: RUF012
    guards = [admins_only]  # noqa: RUF012

    @get("/", sync_to_thread=True, name="admin")
    def monitor(self, request: Request, db: Db, role: QueryValue = None, person: QueryValue = None,
                q: QueryValue = None) -> Template:
        """GET /admin/: the monitor page, every conversation newest activity first, filtered by `role`, `person` and
        `q`. Anyone but an admin is redirected to /login (303; htmx: 401)."""
        admin = request.state.admin
        return Template("admin.html", context=self._page(request, db, admin, parse_filters(role, person, q), None))

    @get("/c/{cid:str}", sync_to_thread=True, name="admin:conversation")
    def conversation(self, request: Request, db: Db, cid: PathId) -> Template:
        """GET /admin/c/{cid}: the monitor with the conversation open (htmx: the open thread alone, _monitor_open.html);
        marks nothing read. 404 for no such conversation; anyone but an admin goes to /login (htmx: 401)."""
        admin = request.state.admin
        conversation_id = parse_id(cid)
        get_conversation(db, conversation_id)
        if HTMXDetails(request):
            return Template("_monitor_open.html", context={"open": thread_context(request, db, conversation_id)})
        return Template("admin.html", context=self._page(request, db, admin, MonitorFilter(), conversation_id))

    @get("/c/{cid:str}/messages", sync_to_thread=True, name="admin:older")
    def older(self, request: Request, db: Db, cid: PathId, before: QueryValue = None) -> Template:
        """GET /admin/c/{cid}/messages: the fragment of the messages before message id `before` (the latest without it).
        404 for no such conversation or an id that is not one; anyone but an admin goes to /login (htmx: 401)."""
        open_ = thread_context(request, db, parse_id(cid))
        messages, has_more = msgs.messages_before(db, open_["row"].id, parse_id(before) if before else None)
        context = {"cid": open_["row"].id, "messages": messages, "has_more": has_more, "senders": open_["senders"],
                   "me": open_["row"].user_b, "peer_last_read": 0, "older_route": "admin:older",
                   "monitor": True}
        return Template("_older_messages.html", context=context)

    @get("/c/{cid:str}/row", sync_to_thread=True, name="admin:row")
    def row(self, request: Request, db: Db, cid: PathId, role: QueryValue = None, person: QueryValue = None,
            q: QueryValue = None) -> Response:
        """GET /admin/c/{cid}/row (admins only): the conversation's row of the monitor list, for a live update; an empty
        200 when there is no such conversation or it does not match the filters (`role`, `person`, `q`). 404 for a
        `cid` that is not an id."""
        row = monitor_row(db, parse_id(cid), parse_filters(role, person, q))
        if row is None:
            return Response("", media_type="text/html")
        return Template("_monitor_row.html", context={"row": row, "online": presence_of(request, [row])})

    @get("/list", sync_to_thread=True, name="admin:list")
    def list_page(self, request: Request, db: Db, cursor: QueryValue = None, role: QueryValue = None,
                  person: QueryValue = None, q: QueryValue = None) -> Template:
        """GET /admin/list (admins only): the page of the monitor list after `cursor`, with the same filters; 404 for a
        cursor that does not decode."""
        try:
            before = ListCursor.decode(cursor) if cursor else None
        except InvalidInput as error:
            raise NotFoundException() from error
        filters = parse_filters(role, person, q)
        rows, next_cursor = list_all_conversations(db, filters, before)
        return Template("_monitor_page.html", context=self._list_context(request, rows, next_cursor, filters))

    @get("/stats", sync_to_thread=True, name="admin:stats")
    def stats_page(self, request: Request, db: Db) -> Template:
        """GET /admin/stats (admins only): messages and new conversations per day and the first-response times, over
        the last stats.DAYS (30) days in KEFU_TIMEZONE."""
        admin = request.state.admin
        zone = request.app.state.settings.zone
        context = {
            "admin": admin,
            "messages_per_day": stats.daily_messages(db, zone=zone),
            "conversations_per_day": stats.daily_conversations(db, zone=zone),
            "responses": stats.response_times(db, zone=zone),
            "days": stats.DAYS,
            "zone": zone,
        }
        return Template("admin_stats.html", context=context)

    @get("/audit", sync_to_thread=True, name="admin:audit")
    def audit_page(self, request: Request, db: Db, before: QueryValue = None, action: QueryValue = None) -> Template:
        """GET /admin/audit (admins only): the audit log, newest first, 50 entries a page (`before`: the entry id to
        continue before), of one `action` when it is a known one (another is ignored); 404 for a `before` that is not an
        id."""
        admin = request.state.admin
        chosen = action if action in audit.ACTIONS else None
        rows, next_before = audit.entries(db, parse_id(before) if before else None, chosen)
        context = {"admin": admin, "entries": rows, "actions": audit.ACTIONS, "action": chosen,
                   "next_before": next_before, "zone": request.app.state.settings.zone, "label": audit.label}
        return Template("admin_audit.html", context=context)

    def _list_context(self, request: Request, rows: list[MonitorRow], cursor: ListCursor | None,
                      filters: MonitorFilter) -> dict[str, Any]:
        params = filters.as_params()
        return {
            "rows": rows,
            "online": presence_of(request, rows),
            "next_cursor": cursor.encode() if cursor else None,
            "filter_params": params,
            "filter_query": urlencode(params),
        }

    def _page(self, request: Request, db: Session, admin: AdminAccount, filters: MonitorFilter,
              open_cid: int | None) -> dict[str, Any]:
        last_event_id = msgs.latest_message_id(db)
        rows, cursor = list_all_conversations(db, filters)
        person = get_user(db, filters.person) if filters.person else None
        return {
            "admin": admin,
            "me": _admin_user(db, admin),
            "filters": filters,
            "filter_person": person,
            "last_event_id": last_event_id,
            "open": thread_context(request, db, open_cid) if open_cid else None,
            **self._list_context(request, rows, cursor, filters),
        }


def _admin_user(db: Session, admin: AdminAccount) -> User:
    user = db.get(User, admin.user_id)
    assert user is not None
    return user
