"""The integration API (/api/v1) as a marketplace's backend calls it: an API key, requests carrying it, and errors
checked as the API promises them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from litestar.testing import TestClient

from app.chat.api_keys import create_key
from tests.seeding import with_session

BASE_URL = "http://127.0.0.1"


def new_key(database_url: str, name: str = "shop") -> str:
    """A new API key named `name`, as `kefu apikey create` makes it."""
    with with_session(database_url) as session:
        _record, key = create_key(session, name)
        session.commit()
    return key


@dataclass
class Api:
    """The app over ASGI, with one API key; `client` itself carries no key (it is a browser too)."""

    client: TestClient
    key: str
    database_url: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.client.get(path, params=params, headers=self.auth)

    def put(self, path: str, body: Any) -> httpx.Response:
        return self.client.put(path, json=body, headers=self.auth)

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.client.post(path, json=body, headers=self.auth | (headers or {}))

    def conversation(self, a: str, b: str) -> int:
        response = self.post("/api/v1/conversations", {"user_ids": [a, b]})
        assert response.status_code in (200, 201), response.text
        return int(response.json()["id"])

    def messages(self, cid: int) -> list[dict[str, Any]]:
        response = self.get(f"/api/v1/conversations/{cid}/messages", limit=100)
        assert response.status_code == 200, response.text
        return response.json()["items"]


def assert_error(response: httpx.Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    """An error as the API promises it: JSON {"error": {"code", "message"[, "field"]}}."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers["content-type"]
    error = response.json()["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    if field is not None:
        assert error.get("field") == field, error
    return error
