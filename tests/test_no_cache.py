"""A shared computer's browser keeps no conversation: pages, fragments, files and JSON say `no-store`; the static
assets (the same for everyone) may be cached."""

from __future__ import annotations

from litestar.testing import TestClient

from tests.file_samples import image_bytes, sign_in_to, upload


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
