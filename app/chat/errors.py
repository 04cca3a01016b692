"""Domain errors; the web layer maps them to status codes and translated pages."""


class ChatError(Exception):
    """Base of every error the domain raises on purpose."""


class NotFound(ChatError):
    pass


class Forbidden(ChatError):
    pass


class InvalidInput(ChatError):
    """Bad input from a person; `str(error)` is the message to show them."""
