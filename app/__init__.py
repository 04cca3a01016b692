"""Kefu (客服): real-time customer-service chat for online marketplaces."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the checkout (tests, benchmarks, docs)
PACKAGE = Path(__file__).resolve().parent  # all the app needs at run time (templates, static, migrations)
