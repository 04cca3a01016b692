"""The API keeps to its own OpenAPI document (schemathesis against the app over ASGI, on SQLite and MariaDB), and
the document and its Swagger UI and ReDoc pages are served from the app itself, with no CDN.

What a marketplace relies on: generated clients and hand-written ones can trust /api/openapi.json, for successes
and for errors alike; no request, however odd, makes the server fail; the docs work on a network without internet.
"""

from __future__ import annotations

import re
from pathlib import Path

import hypothesis.strategies as st
import schemathesis
from hypothesis import HealthCheck, given, settings
from litestar.testing import TestClient
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from app.chat import conversations as convs
from app.chat import messages as msgs
from app.chat.people import get_user
from app.main import create_app
from tests.api_support import BASE_URL, new_key
from tests.conftest import make_settings
from tests.seeding import with_session

EXAMPLES_PER_OPERATION = 25
# no server error; every answer matches the document: its status is listed there, its body fits the schema
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
API_OPERATIONS = {
    "GET /api/v1/users/{user_id}",
    "PUT /api/v1/users/{user_id}",
    "POST /api/v1/links",
    "GET /api/v1/conversations",
    "POST /api/v1/conversations",
    "GET /api/v1/conversations/{cid}",
    "GET /api/v1/conversations/{cid}/messages",
    "POST /api/v1/conversations/{cid}/messages",
    "POST /api/v1/conversations/{cid}/cards",
    "PUT /api/v1/orders/{order_no}",
    "GET /api/v1/orders/{order_no}",
}
URL_RE = re.compile(r"""(?:src|href|url)\s*[=:(]\s*["']([^"']+)["']""", re.IGNORECASE)


def fuzz(operation: APIOperation, auth: dict[str, str], known: dict[str, str]) -> str | None:
    """Valid and invalid requests for one operation, with ids that exist and ids that do not; the first failure."""
    strategies = [operation.as_strategy(generation_mode=mode) for mode in GenerationMode]
    existing = {name: value for name, value in known.items() if f"{{{name}}}" in operation.path}
    if existing:
        strategies.append(operation.as_strategy(path_parameters=existing))

    @given(case=st.one_of(strategies))
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=auth, checks=CHECKS)

    try:
        run()
    except (Exception, BaseExceptionGroup) as error:  # schemathesis reports a FailureGroup
        return str(error)
    return None


def test_the_api_keeps_to_its_own_openapi_document(database_url: str, tmp_path: Path) -> None:
    key = new_key(database_url)
    with with_session(database_url) as session:  # something real to find among the generated ids
        conversation = convs.get_or_create_conversation(session, get_user(session, "b1"), get_user(session, "m1"))
        msgs.send_message(session, conversation.id, "b1", "您好")
        session.commit()
        known = {"cid": str(conversation.id), "user_id": "m1"}
    app = create_app(make_settings(database_url, tmp_path))
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} == API_OPERATIONS  # the document holds the API, and only the API
    failures: dict[str, str] = {}
    try:
        for operation in operations:
            if (failure := fuzz(operation, {"Authorization": f"Bearer {key}"}, known)) is not None:
                failures[operation.label] = failure
    finally:
        asgi.shutdown_lifespans()  # schemathesis keeps the app (and its webhook worker) running otherwise
    assert not failures, "\n\n".join(f"{label}:\n{failure[:3000]}" for label, failure in failures.items())


# --- the document and its pages ---

def get_document(client: TestClient) -> dict:
    response = client.get("/api/openapi.json")
    assert response.status_code == 200, response.text
    assert "json" in response.headers["content-type"]
    return response.json()


def test_the_document_names_every_operation_its_bearer_key_and_its_errors(sqlite_url: str, tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(sqlite_url, tmp_path)), base_url=BASE_URL) as client:
        document = get_document(client)  # readable without a key: it is how people learn to get one
    assert document["openapi"].startswith("3.")
    assert document["components"]["securitySchemes"]["BearerToken"] == {"type": "http", "scheme": "bearer"}
    error_schema = document["components"]["schemas"]["ErrorBody"]
    assert error_schema["required"] == ["error"]
    operations = {f"{method.upper()} {path}": spec for path, item in document["paths"].items()
                  for method, spec in item.items() if method in ("get", "put", "post", "delete", "patch")}
    assert set(operations) == API_OPERATIONS
    for label, spec in operations.items():
        assert spec.get("security") == [{"BearerToken": []}], label
        assert spec.get("summary"), label
        # what it does and what each refusal means, in words a client's author reads (the handler's docstring)
        assert re.search(r"\b4\d\d for ", spec.get("description", "")), label
        for status in ("400", "401", "404"):
            schema = spec["responses"][status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (label, status, schema)
    # both answers of the idempotent writes are documented: created, and found (or stored) before
    for label in ("PUT /api/v1/users/{user_id}", "POST /api/v1/conversations",
                  "POST /api/v1/conversations/{cid}/messages"):
        assert {"200", "201"} <= set(operations[label]["responses"]), label
    post_message = operations["POST /api/v1/conversations/{cid}/messages"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in post_message["parameters"])
    assert "订单已发货" in str(post_message["requestBody"])  # the notice example is shown


def local_urls(html: str) -> tuple[list[str], list[str]]:
    """The URLs a page loads: those on this site, and any other (a CDN)."""
    urls = URL_RE.findall(html)
    remote = [u for u in urls if re.match(r"^(?:[a-z]+:)?//", u, re.IGNORECASE)]
    return [u for u in urls if u not in remote and not u.startswith("data:")], remote


def test_swagger_ui_and_redoc_are_served_from_the_app_without_a_cdn(sqlite_url: str, tmp_path: Path) -> None:
    elsewhere: dict[str, list[str]] = {}
    with TestClient(create_app(make_settings(sqlite_url, tmp_path)), base_url=BASE_URL) as client:
        for short, page_path, marker in (("/docs", "/api/docs", "SwaggerUIBundle"), ("/redoc", "/api/redoc", "Redoc")):
            redirect = client.get(short, follow_redirects=False)
            assert redirect.status_code == 302, short
            assert redirect.headers["location"].endswith(page_path), redirect.headers["location"]
            page = client.get(short, follow_redirects=True)
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), short
            assert marker in page.text, short
            assert "/api/v1/conversations/{cid}/messages" in page.text  # the document is in the page
            local, remote = local_urls(page.text)
            if remote:
                elsewhere[page_path] = remote
            vendored = [u for u in local if u.startswith("/static/vendor/")]
            assert any(u.endswith(".js") for u in vendored), (page_path, local)
            check_assets(client, vendored)
    assert not elsewhere, f"the docs load from other sites (a CDN): {elsewhere}"


def check_assets(client: TestClient, urls: list[str]) -> None:
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
        kind = asset.headers["content-type"]
        if url.endswith(".js"):
            assert "javascript" in kind, (url, kind)
        elif url.endswith(".css"):
            assert "css" in kind, (url, kind)
