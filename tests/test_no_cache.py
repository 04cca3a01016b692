"""A shared computer's browser keeps no conversation: pages, fragments, files and JSON say `no-store`; the static
assets (the same for everyone) may be cached."""

from __future__ import annotations

from litestar.testing import TestClient

from tests.file_samples import image_bytes, upload
from tests.support import sign_in_to


def test_signed_in_pages_fragments_and_files_are_never_stored_by_the_browser(app_client: TestClient) -> None:
    token, cid = sign_in_to(app_client, "b1", "m1")
    sent = upload(app_client, cid, token, "处方.png", image_bytes("PNG"), "image/png")
    assert sent.status_code == 201, sent.text
    mid = sent.text.split('data-message-id="', 1)[1].split('"', 1)[0]
    for path in ("/chat", f"/chat/c/{cid}", f"/chat/c/{cid}/messages?before=999", "/chat/list", f"/files/{mid}",
                 f"/files/{mid}/thumb", "/healthz"):
        response = app_client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        assert response.headers["cache-control"] == "no-store", path
    assert sent.headers["cache-control"] == "no-store"
    assert "no-store" not in app_client.get("/static/css/kefu.css").headers.get("cache-control", "")


def test_static_files_are_linked_by_a_hash_of_their_content_and_cached_for_good(app_client: TestClient) -> None:
    """After an upgrade a browser must not keep the old script: every static URL names its content."""
    import hashlib
    import re

    from app.templating import STATIC_DIR

    sign_in_to(app_client, "b1", "m1")
    page = app_client.get("/chat").text
    for path in ("js/kefu.js", "css/kefu.css", "vendor/htmx-2.0.11.min.js"):
        digest = hashlib.sha256((STATIC_DIR / path).read_bytes()).hexdigest()[:12]
        url = f"/static/{path}?v={digest}"
        assert url in page, path
        assert not re.search(rf'"/static/{re.escape(path)}"', page)  # never unversioned
        served = app_client.get(url)
        assert served.status_code == 200
        assert "max-age=31536000" in served.headers["cache-control"]
        assert "immutable" in served.headers["cache-control"]
