"""Banner schedules: a banner may run from ``starts_at`` (inclusive) to ``ends_at`` (exclusive), both UTC.

Pure: serving evaluates it at serve time from the state a worker holds, the stats API reports it.
"""

from __future__ import annotations

import datetime as dt

SCHEDULED, LIVE, ENDED = "scheduled", "live", "ended"


def _epoch(value: dt.datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:                # the driver returns naive UTC datetimes
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def window(starts_at: dt.datetime | None, ends_at: dt.datetime | None) -> tuple[float | None, float | None]:
    """The schedule as epoch seconds (None = unbounded on that side)."""
    return _epoch(starts_at), _epoch(ends_at)


def status_at(starts: float | None, ends: float | None, now: float) -> str:
    """'scheduled' before ``starts``, 'ended' from ``ends`` on, else 'live' (epoch seconds)."""
    if starts is not None and now < starts:
        return SCHEDULED
    if ends is not None and now >= ends:
        return ENDED
    return LIVE


def status(starts_at: dt.datetime | None, ends_at: dt.datetime | None, now: dt.datetime) -> str:
    return status_at(*window(starts_at, ends_at), now.timestamp())
