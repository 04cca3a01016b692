"""What requests from people not signed in may write to the audit log, bounded.

Failed and throttled admin sign-ins and refused sign-in links are written by anyone who can reach the server: 300
requests with a garbage token wrote 300 rows. Per action and client address at most AUDIT_LIMIT rows in
AUDIT_WINDOW seconds are written (the app's rate limiter: shared across processes with Redis); the others are
counted in this process, and the next row written for that action and address says how many were left out.
"""

from __future__ import annotations

import threading
from collections import Counter

from litestar.datastructures import State
from sqlalchemy.orm import Session

from app.chat import audit

AUDIT_LIMIT = 20
AUDIT_WINDOW = 600.0
MAX_COUNTED = 10_000  # pairs whose left-out rows are counted; past it the counts start again (memory stays bound)

_left_out: Counter[tuple[str, str]] = Counter()
_lock = threading.Lock()


def record_unauthenticated(state: State, db: Session, action: str, actor: str, client: str, detail: str = "") -> None:
    """`audit.record`, unless this client address has had AUDIT_LIMIT rows of `action` in the last AUDIT_WINDOW
    seconds: then only counted, and told in the `detail` of the next row written (`+N not recorded`)."""
    key = (action, client)
    if state.limiter.retry_after(f"audit:{action}:{client}", AUDIT_LIMIT, AUDIT_WINDOW) is not None:
        with _lock:
            if len(_left_out) >= MAX_COUNTED:
                _left_out.clear()
            _left_out[key] += 1
        return
    with _lock:
        missed = _left_out.pop(key, 0)
    if missed:
        detail = f"{detail} (+{missed} not recorded)".strip()
    audit.record(db, action, actor, client, detail)
