"""One rule for every text a person or a marketplace sets (names as message bodies: something visible, no control
or bidi control characters), and sign-in tokens that mean exactly what they say (no `true` seconds, no future)."""

from __future__ import annotations

import time

import pytest
from itsdangerous import URLSafeTimedSerializer
from litestar.testing import TestClient

from app.chat.errors import Forbidden, InvalidInput
from app.chat.links import SALT, LinkIdentity, make_token, read_token
from tests.api_support import new_key
from tests.cli_support import assert_one_line_error, kefu
from tests.support import TEST_SECRET

BAD_NAMES = {
    "invisible only": "\u200b\u3164",
    "a bidi override": "\u202egnp.exe",
    "a NUL": "a\x00b",
    "terminal escapes": "\x1b[31mred",
    "a line break": "第一行\n第二行",
    "too long": "店" * 101,
}


@pytest.mark.parametrize("case", BAD_NAMES)
def test_names_with_nothing_visible_or_control_characters_are_refused_by_the_api(
        app_client: TestClient, database_url: str, case: str) -> None:
    key = new_key(database_url)
    response = app_client.put("/api/v1/users/shop42", json={"name": BAD_NAMES[case], "role": "merchant"},
                              headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "name"
    assert app_client.get("/api/v1/users/shop42", headers={"Authorization": f"Bearer {key}"}).status_code == 404


@pytest.mark.parametrize("case", BAD_NAMES)
def test_kefu_link_refuses_the_same_names(database_url: str, tmp_path, case: str) -> None:  # type: ignore[no-untyped-def]
    ran = kefu(database_url, tmp_path, "link", "b9", "--name", BAD_NAMES[case], "--role", "buyer")
    assert_one_line_error(ran, "名称")


@pytest.mark.parametrize("case", BAD_NAMES)
def test_a_validly_signed_token_with_such_a_name_signs_no_one_in(case: str) -> None:
    payload = {"u": "b9", "n": BAD_NAMES[case], "r": "buyer", "ttl": 300}
    token = URLSafeTimedSerializer(TEST_SECRET, salt=SALT).dumps(payload)
    with pytest.raises(Forbidden):
        read_token(TEST_SECRET, token)


def test_a_ttl_of_true_is_no_number_of_seconds() -> None:
    with pytest.raises(InvalidInput):
        make_token(TEST_SECRET, LinkIdentity("b9", "买家", "buyer"), True)
    token = URLSafeTimedSerializer(TEST_SECRET, salt=SALT).dumps({"u": "b9", "n": "买家", "r": "buyer", "ttl": True})
    with pytest.raises(Forbidden):
        read_token(TEST_SECRET, token)


def test_a_token_signed_in_the_future_is_refused() -> None:
    token = make_token(TEST_SECRET, LinkIdentity("b9", "买家", "buyer"), 3600)
    assert read_token(TEST_SECRET, token).user_id == "b9"
    with pytest.raises(Forbidden):
        read_token(TEST_SECRET, token, now=time.time() - 600)  # our clock says it was signed 10 minutes from now
