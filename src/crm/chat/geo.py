"""Offline country lookup for visitor IPs (geoip2fast's bundled data, no network)."""

from __future__ import annotations

import logging
import threading
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from geoip2fast import GeoIP2Fast

logger = logging.getLogger(__name__)
_lock = threading.Lock()


@lru_cache(maxsize=1)
def _reader() -> GeoIP2Fast:
    from geoip2fast import GeoIP2Fast

    with _lock:
        return GeoIP2Fast(verbose=False)


def country_code(ip: str | None) -> str:
    """Two-letter ISO country code, or "" for private, unknown or invalid addresses."""
    if not ip:
        return ""
    try:
        code = _reader().lookup(ip).country_code or ""
    except Exception:  # the lookup library raises on odd input; a country is optional
        logger.debug("country lookup failed for %r", ip, exc_info=True)
        return ""
    return code if len(code) == 2 and code.isalpha() else ""
