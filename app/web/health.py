"""GET /healthz: 200 while the database answers with its schema at the code's revision and the broker is up, 503
with the reason otherwise (an empty or older database: "kefu db upgrade" has not run)."""

from __future__ import annotations

from litestar import Response, get
from litestar.datastructures import State
from sqlalchemy.exc import SQLAlchemyError

from app.db.migrate import current_revision, head_revision


def _database_ok(state: State) -> tuple[bool, str]:
    """Whether the database answers and its schema is at the head revision, and what to say about it."""
    try:
        with state.engine.connect() as connection:
            current = current_revision(connection)
    except SQLAlchemyError as error:
        return False, type(error).__name__
    head = head_revision()
    if current != head:
        found = f"at revision {current}" if current else "not migrated"
        return False, f"schema {found}, the code needs {head}: run kefu db upgrade"
    return True, "ok"


@get("/healthz", sync_to_thread=True, include_in_schema=False)
def healthz(state: State) -> Response:
    """GET /healthz: 200 with {"status": "ok", "database": "ok", "broker": its kind} while the database answers at the
    code's schema revision and the broker is up; else 503 with "status": "error" and the reasons (the database's error
    class or the revision to upgrade to, the broker's outage)."""
    database_ok, database = _database_ok(state)
    broker = state.broker
    body = {
        "status": "ok" if database_ok and broker.ok else "error",
        "database": database,
        "broker": broker.kind if broker.ok else f"{broker.kind} unavailable: {broker.reason}",
    }
    return Response(body, status_code=200 if database_ok and broker.ok else 503)
