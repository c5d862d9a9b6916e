"""Fixtures shared by the reliability tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture
def quiet_http_log() -> Iterator[None]:
    """Hundreds or thousands of requests would bury a failure's summary in httpx's log."""
    log = logging.getLogger("httpx")
    level = log.level
    log.setLevel(logging.WARNING)
    yield
    log.setLevel(level)
