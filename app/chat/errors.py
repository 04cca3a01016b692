"""Domain errors; the web layer maps them to status codes and translated pages (app/web/errors.py: status_of).

Each kind has a stable `code` (what the API answers with, what the web layer looks up); `str(error)` is the message
to show the person, and `field`, where one is known, the input it is about."""


class ChatError(Exception):
    """Base of every error the domain raises on purpose."""

    code = "invalid"

    def __init__(self, message: str = "", field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFound(ChatError):
    """What was asked for does not exist (or is not for this person to know of)."""

    code = "not_found"


class Forbidden(ChatError):
    """The person may not do this."""

    code = "forbidden"


class Conflict(ChatError):
    """What is asked is already so, or no longer possible in the present state (409)."""

    code = "conflict"


class InvalidInput(ChatError):
    """Bad input from a person; `str(error)` is the message to show them."""

    code = "invalid"


class TooFrequent(ChatError):
    """A rate limit refused the work; `str(error)` is the message to show, `retry_after` whole seconds."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(ChatError):
    """The work could not be done now, and nothing was stored: the same request may simply be tried again."""

    code = "unavailable"
