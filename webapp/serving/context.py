"""The context of a serve: what the contextual policy (bandits/contextual.py) reads besides location and
referrer. The hour and weekday of the serve time in the tenant's time zone, and the visitor's device class
from the User-Agent, parsed by device-detector (the Python port of Matomo's Device Detector)."""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo

from device_detector import DeviceDetector

MAX_USER_AGENT = 512            # longer User-Agent strings are cut before parsing
# device-detector's device types → the contextual policy's device levels (bandits.contextual.DEVICES)
DEVICE_CLASSES = {"smartphone": "mobile", "feature phone": "mobile", "phablet": "mobile", "tablet": "tablet",
                  "desktop": "desktop"}


@functools.lru_cache(maxsize=8192)
def device_class(user_agent: str) -> str:
    """'mobile', 'tablet', 'desktop' or 'other' (bots, TVs, consoles, unknown) for a User-Agent string.
    Parsing takes milliseconds; a worker sees few distinct strings, each parsed once (LRU cache)."""
    if not user_agent:
        return "other"
    detected = DeviceDetector(user_agent[:MAX_USER_AGENT]).parse()
    if detected.is_bot():
        return "other"
    kind = detected.device_type()
    return DEVICE_CLASSES.get(str(getattr(kind, "value", kind) or "").lower(), "other")


@functools.lru_cache(maxsize=1024)
def _zone(name: str) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def local_hour_and_weekday(at: dt.datetime, timezone: str | None) -> tuple[int, int]:
    """The hour (0–23) and weekday (0 = Monday) of ``at`` in ``timezone`` (UTC when unknown)."""
    local = at.astimezone(_zone(timezone or "UTC"))
    return local.hour, local.weekday()
