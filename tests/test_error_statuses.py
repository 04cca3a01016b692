"""Every refusal the domain makes has one HTTP status wherever it surfaces (a page, the composer, the API): one table
(app/web/errors.py), looked up by the error's kind, so a subclass (a retry-worthy send that took too long, a busy
image decoder) is never a bare 400."""

from __future__ import annotations

import pytest

from app.chat.errors import ChatError, Forbidden, InvalidInput, NotFound, TooFrequent, Unavailable
from app.chat.files import Busy, TooLarge, UnsupportedType
from app.chat.messages import KeyReused, SendTooSlow
from app.web.errors import api_code, status_of


@pytest.mark.parametrize(("error", "status", "code"), [
    (NotFound("x"), 404, "not_found"), (Forbidden("x"), 403, "forbidden"), (InvalidInput("x"), 422, "invalid"),
    (KeyReused("x"), 422, "idempotency_key_reused"), (TooLarge("x"), 413, "too_large"),
    (UnsupportedType("x"), 415, "unsupported_type"), (TooFrequent("x", 3), 429, "rate_limited"),
    (SendTooSlow("x"), 503, "unavailable"), (Busy("x"), 503, "unavailable"), (Unavailable("x"), 503, "unavailable"),
])
def test_each_kind_of_refusal_has_its_status_and_code(error: ChatError, status: int, code: str) -> None:
    assert (status_of(error), error.code) == (status, code)
    assert api_code(status) == ("invalid" if code == "idempotency_key_reused" else code)


def test_every_domain_error_in_the_code_has_a_status_of_its_own() -> None:
    def subclasses(kind: type[ChatError]) -> list[type[ChatError]]:
        return [kind, *(sub for child in kind.__subclasses__() for sub in subclasses(child))]

    for kind in subclasses(ChatError):
        error = kind("x", 1) if kind is TooFrequent else kind("x")
        assert status_of(error) != 400 or kind is ChatError, f"{kind.__name__} would be a bare 400"


def test_an_error_names_its_field_as_data() -> None:
    assert InvalidInput("exactly two people", field="user_ids").field == "user_ids"
    assert InvalidInput("x").field is None
