"""Which language a page answers in: zh-CN unless the reader's browser prefers, by its q-values, a language Kefu has
a catalogue for (RFC 9110, section 12.5.4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import i18n


@pytest.fixture
def with_english(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "en").mkdir()  # an English catalogue, as locale/en would hold one
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)


@pytest.mark.parametrize(("header", "locale"), [
    (None, "zh_CN"), ("", "zh_CN"), ("en", "en"), ("EN-gb", "en"), ("en-US,en;q=0.9", "en"),
    ("zh-TW", "zh_CN"), ("en;q=0.5, zh-CN;q=0.9", "zh_CN"), ("en;q=0.9, zh-CN;q=0.5", "en"),
    ("zh;q=0, en", "en"), ("fr, en;q=0.3", "en"), ("fr", "zh_CN"), ("en;q=0", "zh_CN"),
    ("en;q=abc", "zh_CN"), ("de;q=1, en;q=0.001", "en"), (",,,;;;q=", "zh_CN"),
])
def test_the_browsers_preference_by_q_value_among_the_catalogues(with_english: None, header: str | None,
                                                                   locale: str) -> None:
    assert i18n.pick_locale(header) == locale


def test_without_an_english_catalogue_everyone_reads_chinese(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    assert i18n.pick_locale("en-US,en;q=0.9") == "zh_CN"


def test_a_huge_header_is_read_only_so_far() -> None:
    assert i18n.pick_locale("xx;q=0.1," * 100_000 + "en") == "zh_CN"
