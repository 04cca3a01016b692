"""Searching one's own messages (`GET /chat/search`), and the newer messages of a thread opened at a search result."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.params import QueryParameter
from litestar.plugins.htmx import HTMXDetails
from litestar.response import Template

from app.chat import conversations as convs
from app.chat import messages as msgs
from app.chat import search
from app.chat.errors import InvalidInput
from app.web.chat import message_page_context, page_context
from app.web.deps import PERSON_DEPENDENCIES, Db, Me, PathId, QueryValue, parse_id
from app.web.errors import error_response

# Longer than any query searched (search.MAX_QUERY_LENGTH): a longer one gets the domain's clear error, not Litestar's.
SearchText = Annotated[str | None, QueryParameter(required=False, max_length=1000)]


def results_context(db: Db, me: Me, q: str | None, before: str | None) -> dict[str, Any]:
    """The results part of a template context: `q` (trimmed), its `hits` and the next page's `next_before` (no hits
    for a blank query). Raises InvalidInput (field `q`) for a query that is too long; 404 for a `before` that is not
    an id."""
    query = (q or "").strip()
    if not query:
        return {"q": "", "hits": [], "next_before": None, "first_page": True}
    hits, next_before = search.search_messages(db, me.id, query, parse_id(before) if before else None)
    return {"q": query, "hits": hits, "next_before": next_before, "first_page": before is None}


class SearchController(Controller):
    path = "/chat"
    include_in_schema = False  # web pages; the OpenAPI document is for /api/v1
    dependencies = PERSON_DEPENDENCIES

    @get("/search", sync_to_thread=True, name="chat:search")
    def search_page(self, request: Request, db: Db, me: Me, q: SearchText = None,
                    before: QueryValue = None) -> Response:
        """GET /chat/search?q=…[&before=…]: the messages holding `q` in the signed-in person's own conversations, newest
        first, 20 a page (`before`: the message id the next page continues before); recalled messages are not found.
        A page (the chat app with the results in its list column) or, for htmx, the results fragment. A `q` of more
        than 100 characters: 400 page, 422 fragment. 401 when not signed in, 403 for an admin (who search in the
        monitor), 404 for a `before` that is not an id."""
        fragment = bool(HTMXDetails(request))
        try:
            results = results_context(db, me, q, before)
        except InvalidInput as error:
            return error_response(request, 422 if fragment else 400, str(error))
        if fragment:
            return Template("_search_results.html", context={**results, "acting_as": me.id})
        return Template("chat.html", context={**page_context(request, db, me, None), "search": results})

    @get("/c/{cid:str}/newer", sync_to_thread=True, name="chat:newer")
    def newer_messages(self, db: Db, me: Me, cid: PathId, after: QueryValue = None) -> Template:
        """GET /chat/c/{cid}/newer?after={mid}: the fragment of the messages after message id `after` (a thread opened
        at a search result loads towards the present), with a loader for more while there are. 401 when not signed in,
        403 for a non-participant or an admin, 404 for no such conversation or an `after` that is not an id."""
        conversation_id = parse_id(cid)
        item = convs.conversation_item(db, conversation_id, me.id)
        after_id = parse_id(after or "")
        messages, has_newer = msgs.messages_after_in(db, conversation_id, after_id)
        context = {**message_page_context(me, item, messages), "has_newer": has_newer,
                   "last_id": messages[-1].id if messages else after_id}
        return Template("_newer_messages.html", context=context)
