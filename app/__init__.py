"""Kefu (客服): real-time customer-service chat for online marketplaces."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
