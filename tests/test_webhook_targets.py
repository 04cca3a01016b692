"""Where a webhook may point: somewhere on the internet, never inside the network Kefu runs in (loopback, private,
link-local and multicast addresses, cloud metadata), unless KEFU_WEBHOOK_PRIVATE_TARGETS says so; checked when ops
add it and again at each delivery (a name can come to point inside); and a URL that cannot be used is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.db.models import Webhook
from tests.cli_support import assert_one_line_error, kefu
from tests.seeding import with_session
from tests.webhook_support import (
    Receiver,
    WorkerInThread,
    store_messages,
    wait_for_row,
)

PRIVATE_TARGETS = ["http://127.0.0.1:8080/hook", "http://localhost/hook", "http://169.254.169.254/latest/meta-data",
                   "http://10.0.0.5/hook", "http://192.168.1.10/hook", "http://[::1]:8080/hook", "http://0.0.0.0/",
                   "http://[fe80::1]/hook", "http://224.0.0.1/"]


BAD_URLS = ["ftp://example.com/hook", "http://a b/", "http://user:pw@93.184.216.34/", "http://93.184.216.34:99999/",
            "http://[::1", "http://93.184.216.34/\r\nX-Injected: 1", "http://93.184.216.34:0/", "https:///nohost"]


@pytest.mark.parametrize("url", PRIVATE_TARGETS)
def test_loopback_private_and_link_local_webhook_targets_are_refused(database_url: str, tmp_path: Path,
                                                                      url: str) -> None:
    added = kefu(database_url, tmp_path, "webhook", "add", url, private_targets=False)
    assert added.code != 0 and "KEFU_WEBHOOK_PRIVATE_TARGETS" in added.err, added.err
    assert_one_line_error(added, "KEFU_WEBHOOK_PRIVATE_TARGETS")
    listed = kefu(database_url, tmp_path, "webhook", "list", private_targets=False)
    assert "webhook" not in listed.out.lower().replace("webhooks", "")
    assert listed.out.strip() == "no webhooks"  # the line above holds for a listed webhook's row too


@pytest.mark.parametrize("url", BAD_URLS)
def test_webhook_urls_that_cannot_be_used_are_refused_with_a_clear_line(database_url: str, tmp_path: Path,
                                                                         url: str) -> None:
    added = kefu(database_url, tmp_path, "webhook", "add", url, private_targets=False)
    assert added.code != 0 and "url:" in added.err and "Traceback" not in added.err, added.err
    assert_one_line_error(added, "url:")


def test_a_public_address_is_accepted(database_url: str, tmp_path: Path) -> None:
    added = kefu(database_url, tmp_path, "webhook", "add", "https://93.184.216.34/kefu/hook", private_targets=False)
    assert added.code == 0, added.err


def test_a_name_that_now_points_inside_gets_no_delivery(database_url: str, tmp_path: Path, receiver: Receiver) -> None:
    """Checked again at delivery time: a name that resolved outside when added (DNS can change) and now resolves to
    127.0.0.1 is refused, and the attempt says why."""
    with with_session(database_url) as session:
        session.add(Webhook(url=receiver.url.replace("127.0.0.1", "localhost"), events="message.created",
                            secret="s" * 32))
        session.commit()
    [delivery_id] = store_messages(database_url, 1)
    worker = WorkerInThread(database_url, timeout=2.0, lease_margin=60.0, private_allowed=False).start()
    try:
        row = wait_for_row(database_url, delivery_id, lambda row: bool(row.attempts and row.last_error))
    finally:
        worker.stop()
    assert row.last_error.startswith("refused:") and "127.0.0.1" in row.last_error
    assert receiver.snapshot() == []
