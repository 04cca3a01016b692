"""GET /healthz: 200 while the database answers, 503 with the reason otherwise."""

from __future__ import annotations

from litestar import Response, get
from litestar.datastructures import State
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError


def _database_ok(state: State) -> tuple[bool, str]:
    try:
        with state.sessions() as session:
            session.execute(text("SELECT 1"))
        return True, "ok"
    except SQLAlchemyError as error:
        return False, type(error).__name__


@get("/healthz", sync_to_thread=True, include_in_schema=False)
def healthz(state: State) -> Response:
    database_ok, database = _database_ok(state)
    broker = state.broker
    body = {
        "status": "ok" if database_ok and broker.ok else "error",
        "database": database,
        "broker": broker.kind if broker.ok else f"{broker.kind} unavailable: {broker.reason}",
    }
    return Response(body, status_code=200 if database_ok and broker.ok else 503)
