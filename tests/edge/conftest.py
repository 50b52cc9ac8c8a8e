"""Fixtures of the edge tests: a private mosquitto per test (see tests/support/brokers.py)."""

from __future__ import annotations

from tests.support.brokers import mosquitto

__all__ = ["mosquitto"]
