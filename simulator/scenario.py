"""Scenario parameters of a simulated banner slot, and the three benchmark presets.

A scenario is a *distribution* over problems: each seed draws its own true click-through rates and its
own stream of visitors from it (see :mod:`simulator.env`). The generative model, for banner b and city c:

    slot-level logit     μ_b  ~ Normal(logit(base_ctr), banner_spread²)
    city-level CTR       p_cb = sigmoid(μ_b + δ_cb),   δ_cb ~ Normal(0, city_spread²)
    at hour h (local)    p_cb(h) = p_cb · m(h),        m(h) = 1 + hour_amplitude · cos(2π (h − peak_hour) / 24)

so cities agree in part (the shared μ_b) and differ in part (δ_cb); hour-of-day moves every banner's rate
by the same factor (it changes how many clicks there are to win, not which banner is best).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field, replace
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

INDIAN_CITIES = (
    "Mumbai", "Delhi", "Bengaluru", "Hyderabad", "Chennai", "Kolkata", "Pune", "Ahmedabad", "Jaipur", "Surat",
    "Lucknow", "Kanpur", "Nagpur", "Indore", "Bhopal", "Patna", "Vadodara", "Coimbatore", "Kochi", "Guwahati",
    "Visakhapatnam", "Ludhiana", "Agra", "Nashik", "Madurai", "Varanasi", "Ranchi", "Mysuru", "Raipur", "Goa",
)


@dataclass(frozen=True)
class Scenario:
    """Parameters of one simulated slot. All fields are validated at construction.

    Parameters
    ----------
    name : str
    n_banners : int
        K, the number of active banners (≥ 2).
    n_cities : int
        Number of cities (1 ≤ n ≤ 30; named after Indian cities, lower-cased as the server normalizes).
    horizon : int
        Impressions in one run.
    batch_size : int
        Impressions per environment step = per posterior refresh (see :mod:`simulator.env`). Must divide
        ``horizon``. 1 gives the classic one-impression-per-step bandit.
    base_ctr, banner_spread, city_spread : float
        The generative model above (``base_ctr`` in (0, 0.5); spreads ≥ 0, on the logit scale).
    arrival_zipf : float
        City c (0-based, by size) receives a share ∝ 1 / (c + 1)^arrival_zipf of the traffic (0 = equal).
    hour_amplitude, peak_hour : float
        Hour-of-day modulation m(h); 0 ≤ amplitude < 1, peak in local hours [0, 24).
    timezone : str
        The tenant's IANA time zone; hours are local hours there (default Asia/Kolkata, IST).
    start : datetime
        UTC time of the first impression.
    impressions_per_hour : float
        Traffic rate of the slot (uniform in time).
    drift_at : int or None
        Impression index at which the true CTRs change: the banner that was worst slot-wide takes the best
        banner's slot-level logit plus ``drift_boost``, and the old best takes the old worst's logit (the
        city-level deviations stay with their banners). So one banner becomes clearly best almost everywhere.
    drift_boost : float
        Logit added to the new best banner (log 1.3 ≈ 0.26 ≈ +30 % CTR).
    new_city_at : int or None
        Impression index at which the last city starts receiving traffic (a new city: cold start); before
        it, that city has no traffic at all.
    new_city_share : float
        The new city's share of traffic from ``new_city_at`` on (the other cities keep their proportions).
    click_delay_seconds : float
        Mean of an exponential delay between an impression and its click (0 = clicks are known at once). A
        delayed click reaches the policy at the first refresh after it happens.
    reversed_city : int or None
        City (0-based, by size) whose taste runs against the slot's: in its CTRs the slot-level logits are
        mirrored by rank (the slot's best banner gets the slot's worst logit, the second best the second worst,
        and so on), its own deviations δ stay. The case where pooling the cities misleads (an outlier city).
    """

    name: str = "custom"
    n_banners: int = 10
    n_cities: int = 20
    horizon: int = 200_000
    batch_size: int = 100
    base_ctr: float = 0.03
    banner_spread: float = 0.3
    city_spread: float = 0.15
    arrival_zipf: float = 1.0
    hour_amplitude: float = 0.3
    peak_hour: float = 21.0
    timezone: str = "Asia/Kolkata"
    start: dt.datetime = field(default=dt.datetime(2026, 1, 5, 0, 0, tzinfo=dt.UTC))
    impressions_per_hour: float = 2500.0
    drift_at: int | None = None
    drift_boost: float = math.log(1.3)
    new_city_at: int | None = None
    new_city_share: float = 0.1
    click_delay_seconds: float = 0.0
    reversed_city: int | None = None

    def __post_init__(self) -> None:
        def integer(name: str, low: int, high: int | None = None) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low or (
                    high is not None and value > high):
                bound = f"in [{low}, {high}]" if high is not None else f"≥ {low}"
                raise ValueError(f"Scenario.{name} must be an integer {bound}, got {value!r}")

        def number(name: str, low: float, high: float, *, closed_high: bool = False) -> None:
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if ok:
                ok = low <= value and (value <= high if closed_high else value < high)
            if not ok:
                bracket = "]" if closed_high else ")"
                raise ValueError(f"Scenario.{name} must be a number in [{low}, {high}{bracket}, got {value!r}")

        integer("n_banners", 2)
        integer("n_cities", 1, len(INDIAN_CITIES))
        integer("horizon", 1)
        integer("batch_size", 1)
        if self.horizon % self.batch_size:
            raise ValueError(f"Scenario.batch_size ({self.batch_size}) must divide horizon ({self.horizon})")
        number("base_ctr", 1e-6, 0.5)
        number("banner_spread", 0.0, 5.0, closed_high=True)
        number("city_spread", 0.0, 5.0, closed_high=True)
        number("arrival_zipf", 0.0, 5.0, closed_high=True)
        number("hour_amplitude", 0.0, 1.0)
        number("peak_hour", 0.0, 24.0)
        number("impressions_per_hour", 1e-6, math.inf)
        number("drift_boost", 0.0, 5.0, closed_high=True)
        number("new_city_share", 1e-6, 1.0)
        number("click_delay_seconds", 0.0, math.inf)
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError(f"Scenario.timezone must be an IANA time zone, got {self.timezone!r}") from None
        if not isinstance(self.start, dt.datetime) or self.start.tzinfo is None:
            raise ValueError("Scenario.start must be a timezone-aware datetime (UTC)")
        for name in ("drift_at", "new_city_at"):
            value = getattr(self, name)
            if value is not None:
                integer(name, 1, self.horizon - 1)
        if self.reversed_city is not None:
            integer("reversed_city", 0, self.n_cities - 1)
        if self.new_city_at is not None and self.n_cities < 2:
            raise ValueError("Scenario.new_city_at needs n_cities ≥ 2 (the last city is the new one)")

    @property
    def cities(self) -> tuple[str, ...]:
        """City names as the server stores locations (trimmed, case-folded)."""
        return tuple(c.casefold() for c in INDIAN_CITIES[: self.n_cities])

    @property
    def banners(self) -> tuple[str, ...]:
        return tuple(f"b{i:02d}" for i in range(self.n_banners))

    def with_(self, **changes) -> Scenario:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def describe(self) -> str:
        """One line of the parameters that matter, for figure captions and reports."""
        parts = [f"K={self.n_banners}", f"cities={self.n_cities}", f"horizon={self.horizon:,}",
                 f"refresh every {self.batch_size} impressions", f"base CTR={self.base_ctr:g}",
                 f"banner spread={self.banner_spread:g}", f"city spread={self.city_spread:g} (logit)",
                 f"Zipf arrivals s={self.arrival_zipf:g}",
                 f"hour amplitude={self.hour_amplitude:g} peak {self.peak_hour:g}h {self.timezone}",
                 f"{self.impressions_per_hour:g} impressions/h"]
        if self.drift_at is not None:
            parts.append(f"drift at {self.drift_at:,} (boost {self.drift_boost:.3g} logit)")
        if self.new_city_at is not None:
            parts.append(f"new city at {self.new_city_at:,} with {self.new_city_share:.0%} of traffic")
        if self.reversed_city is not None:
            parts.append(f"city {self.reversed_city} (0 = largest) with the slot's ranking reversed")
        if self.click_delay_seconds:
            parts.append(f"click delay mean {self.click_delay_seconds:g} s")
        return ", ".join(parts)


STATIONARY = Scenario(name="stationary")
COLD_START = Scenario(name="cold-start", new_city_at=100_000, new_city_share=0.1)
DRIFT = Scenario(name="drift", drift_at=100_000)

PRESETS: dict[str, Scenario] = {s.name: s for s in (STATIONARY, COLD_START, DRIFT)}
