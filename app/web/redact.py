"""Sign-in tokens never reach the logs: uvicorn's access log shows `/chat?token=[redacted]`.

A link's token signs its holder in until it expires; an access log is read by more people, and kept longer, than a
token should be.
"""

from __future__ import annotations

import logging
import re

SECRET_QUERY = re.compile(r"((?:^|[?&])token=)[^&#\s]*", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` (a path with its query) with the value of every `token=` replaced by `[redacted]`."""
    return SECRET_QUERY.sub(r"\1[redacted]", text)


class RedactTokens(logging.Filter):
    """A filter for uvicorn's access logger (its arguments: client, method, path with query, version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keeps the record, with any token in its arguments redacted."""
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


def install() -> None:
    """Adds the filter to uvicorn's access logger (once, however many apps this process makes)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in access.filters):
        access.addFilter(RedactTokens())
