"""Invalid-click rules: clicks too fast after the impression, too many from one customer or IP in a
window, or from a known bot user agent are stored but flagged, and never reach the posteriors.

Pure: no Flask, no Cassandra. The server and the simulator call the same :func:`classify`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any

# Crawler and automation user agents (substring, case-insensitive). Real browsers, headless included,
# are not matched: a headless browser is caught by the timing and rate rules instead.
DEFAULT_BOT_PATTERN = (r"bot\b|bot/|crawl|spider|slurp|facebookexternalhit|bingpreview|mediapartners|"
                       r"curl/|wget/|python-urllib|go-http-client|okhttp|scrapy|httpclient|phantomjs")

REASONS = ("too_fast", "bot_user_agent", "customer_rate", "ip_rate", "foreign_origin", "ua_mismatch",
           "ip_mismatch")


@dataclass(frozen=True)
class ClickFilterSettings:
    """Per-tenant thresholds. A rate limit of 0 disables that rule."""

    enabled: bool = True
    min_delay_seconds: float = 0.5        # a click sooner than this after its impression is not human
    max_clicks_per_customer: int = 10     # per window
    max_clicks_per_ip: int = 30           # per window
    window_seconds: int = 3600            # fixed windows, aligned to the epoch
    block_bot_user_agents: bool = True
    # A click whose client differs from its impression's (ad servers' "impression/click mismatch"): its user
    # agent, or its address (IPv4, or IPv6 /64). Off by default: a publisher that calls serve from its own
    # server (and renders click_url into its page) would have every click flagged. Turn them on when pages
    # call serve from the visitor's browser (the JS tag, the embed frame).
    flag_ua_mismatch: bool = False
    flag_ip_mismatch: bool = False

    def __post_init__(self) -> None:
        for name in ("enabled", "block_bot_user_agents", "flag_ua_mismatch", "flag_ip_mismatch"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false")
        if not (0 <= self.min_delay_seconds <= 3600):
            raise ValueError("min_delay_seconds must be between 0 and 3600")
        for name in ("max_clicks_per_customer", "max_clicks_per_ip"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not (0 <= value <= 1_000_000):
                raise ValueError(f"{name} must be an integer between 0 and 1000000")
        if isinstance(self.window_seconds, bool) or not isinstance(self.window_seconds, int) or not (
                60 <= self.window_seconds <= 7 * 86400):
            raise ValueError("window_seconds must be an integer between 60 and 604800")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ClickFilterSettings:
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ValueError("click_filter must be an object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown click_filter field(s): {', '.join(unknown)}")
        merged = {**asdict(cls()), **data}
        delay = merged["min_delay_seconds"]
        if isinstance(delay, int) and not isinstance(delay, bool):
            if not 0 <= delay <= 3600:      # before float(): an int too large for a float would overflow
                raise ValueError("min_delay_seconds must be between 0 and 3600")
            merged["min_delay_seconds"] = float(delay)
        if not isinstance(merged["min_delay_seconds"], float):
            raise ValueError("min_delay_seconds must be a number")
        return cls(**merged)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_BOT_RE = re.compile(DEFAULT_BOT_PATTERN, re.IGNORECASE)


def is_bot_user_agent(user_agent: str) -> bool:
    return not user_agent.strip() or bool(_BOT_RE.search(user_agent))


def window_bucket(epoch_seconds: float, settings: ClickFilterSettings) -> int:
    return int(epoch_seconds // settings.window_seconds)


def classify(settings: ClickFilterSettings, *, delay_seconds: float, user_agent: str,
             customer_clicks: int | None, ip_clicks: int | None,
             same_user_agent: bool | None = None, same_ip: bool | None = None) -> str | None:
    """The reason a click is invalid, or None when it counts.

    ``customer_clicks`` / ``ip_clicks``: clicks from this customer / IP in the current window, this one
    included (None when unknown, e.g. no customer ID, or the rate store is unreachable).
    ``same_user_agent`` / ``same_ip``: whether the click's client is its impression's (None when unknown:
    a token signed without the client hashes).
    """
    if not settings.enabled:
        return None
    if delay_seconds < settings.min_delay_seconds:
        return "too_fast"
    if settings.block_bot_user_agents and is_bot_user_agent(user_agent):
        return "bot_user_agent"
    if settings.flag_ua_mismatch and same_user_agent is False:
        return "ua_mismatch"
    if settings.flag_ip_mismatch and same_ip is False:
        return "ip_mismatch"
    if settings.max_clicks_per_customer and customer_clicks is not None \
            and customer_clicks > settings.max_clicks_per_customer:
        return "customer_rate"
    if settings.max_clicks_per_ip and ip_clicks is not None and ip_clicks > settings.max_clicks_per_ip:
        return "ip_rate"
    return None
