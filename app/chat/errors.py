"""Domain errors; the web layer maps them to status codes and translated pages."""


class ChatError(Exception):
    """Base of every error the domain raises on purpose."""


class NotFound(ChatError):
    pass


class Forbidden(ChatError):
    pass


class InvalidInput(ChatError):
    """Bad input from a person; `str(error)` is the message to show them."""


class TooFrequent(ChatError):
    """A rate limit refused the work (429); `str(error)` is the message to show, `retry_after` whole seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
