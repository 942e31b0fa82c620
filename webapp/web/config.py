"""Configuration: one typed settings class (pydantic-settings), layered defaults < environment < test dict.

The only module that reads ``os.environ``. Every variable the server, gunicorn.conf.py and the Spark jobs read
is a field of :class:`Settings`, with its type, default, constraints and a one-line description; an invalid
value stops the start with a :class:`ConfigError` naming the variable and what it allows.
docs/configuration.md is generated from this module: ``python -m webapp.web.config --markdown``.

Imports no Flask-app code and connects nothing: gunicorn.conf.py reads its settings here too.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, get_args

import annotated_types
from cassandra import ConsistencyLevel
from limits import parse_many
from limits.strategies import STRATEGIES
from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class ConfigError(ValueError):
    """A setting's value is not valid; the message names each variable, its value and what is allowed."""


class OneOf:
    """Validator: the value is one of ``choices`` (kept, so the docs can list them)."""

    def __init__(self, choices: Iterable[str]) -> None:
        self.choices = tuple(choices)

    def __call__(self, value: str) -> str:
        if value not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}")
        return value


class Matches:
    """Validator: the whole value matches ``pattern``; ``expected`` says what it must be in the error."""

    def __init__(self, pattern: str, expected: str) -> None:
        self.pattern = re.compile(pattern)
        self.expected = expected

    def __call__(self, value: str) -> str:
        if not self.pattern.fullmatch(value):
            raise ValueError(f"must be {self.expected}")
        return value


def _rate_limit(value: str) -> str:
    try:
        parse_many(value)
    except ValueError:
        raise ValueError("is not a rate limit such as '600/minute' or '10/second;500/hour'") from None
    return value


def _timezone(value: str) -> str:
    from zoneinfo import available_timezones

    # Looked up in the list rather than loaded: ZoneInfo("Asia") raises IsADirectoryError.
    if value not in available_timezones() - {"localtime"}:
        raise ValueError("is not a known IANA time zone such as 'Asia/Kolkata' or 'UTC'")
    return value


def _host(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", value):
            raise ValueError("is not an IP address or a host name") from None
    return value


def _networks(value: str) -> str:
    try:
        networks(value)
    except ValueError:
        raise ValueError("is not a comma-separated list of networks such as 127.0.0.0/8,10.0.0.0/8") from None
    return value


def networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``"127.0.0.0/8, ::1"`` → the networks (a bare address is a /32 or /128)."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip())


def _blank_is_none(value: Any) -> Any:
    """An empty environment variable means "not set" for the optional numbers."""
    return None if isinstance(value, str) and not value.strip() else value


Seconds = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=1)]
Port = Annotated[int, Field(ge=1, le=65535)]
RateLimit = Annotated[str, AfterValidator(_rate_limit)]
Hosts = Annotated[str, AfterValidator(Matches(r"[^,\s]+(\s*,\s*[^,\s]+)*", "host names or addresses, comma-separated"))]
Networks = Annotated[str, AfterValidator(lambda value: _networks(value))]
Keyspace = Annotated[str, AfterValidator(Matches(r"[A-Za-z][A-Za-z0-9_]{0,47}",
                                                 "a keyspace name: a letter, then up to 47 letters, digits or _"))]
Replication = Annotated[str, AfterValidator(Matches(r"\s*(\d+|\w[^:,]*:\s*\d+(\s*,\s*\w[^:,]*:\s*\d+)*)\s*",
                                                    "N (a replication factor) or dc1:N,dc2:N"))]
StorageUri = Annotated[str, AfterValidator(Matches(r"[a-z][a-z0-9+.-]*://.*", "a storage URI of the limits "
                                                   "package such as memory:// or redis://host:6379"))]
HostNames = Annotated[str, AfterValidator(Matches(r"(\s*\.?[A-Za-z0-9:.\[\]-]+\s*(,\s*\.?[A-Za-z0-9:.\[\]-]+\s*)*)?",
                                                  "empty or host names, comma-separated"))]
BaseUrl = Annotated[str, AfterValidator(Matches(r"(https?://\S+)?", "empty or an http(s):// URL"))]
JvmMemory = Annotated[str, AfterValidator(Matches(r"\d+[kKmMgGtT]?", "a JVM memory size such as 768m or 2g"))]


class _Group(BaseSettings):
    """Settings are read from environment variables of the fields' names (case-sensitive), nothing else."""

    model_config = SettingsConfigDict(case_sensitive=True, frozen=True, extra="forbid")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings          # no .env file, no secrets directory


class CassandraSettings(_Group):
    """Cassandra"""

    CASSANDRA_HOSTS: Hosts = Field(
        "127.0.0.1", description="contact points, comma-separated; a cluster's hosts instead of the local "
                                 "Cassandra (then `make` neither downloads nor starts one)")
    CASSANDRA_PORT: Port = Field(9042, description="CQL port")
    CASSANDRA_KEYSPACE: Keyspace = Field(
        "banner_bandit", description="keyspace (tests use one of their own and drop it)")
    CASSANDRA_REPLICATION: Replication = Field(
        "1", description="replication when the schema command creates the keyspace: `N` (SimpleStrategy) or "
                         "`dc1:3,dc2:3` (NetworkTopologyStrategy)")
    CASSANDRA_LOCAL_DC: str = Field("", description="local data center for DC-aware load balancing (multi-DC "
                                                    "clusters)")
    CASSANDRA_USERNAME: str = Field("", description="user of password authentication; empty: none")
    CASSANDRA_PASSWORD: str = Field("", description="password of password authentication")
    CASSANDRA_CONSISTENCY: Annotated[str, AfterValidator(OneOf(ConsistencyLevel.name_to_value))] = Field(
        "LOCAL_QUORUM", description="consistency of the reads and writes of the event log and configuration "
                                    "(the Spark jobs' too)")


class ServingSettings(_Group):
    """Serving and learning"""

    ADMIN_API_TOKEN: str = Field("", description="bearer token of the management API (`/v1/admin/*`); empty "
                                                 "disables it (401). `make run` generates one")
    API_KEY_CACHE_SECONDS: Seconds = Field(
        2.0, description="how long a server trusts a tenant API key it has read (a revoked key stops working "
                         "on every server within this time)")
    SECRET_KEY: Annotated[str, Field(min_length=1)] = Field(
        "dev-only-secret-change-me", description="Flask secret (dashboard sessions); also signs click tokens "
                                                 "unless `CLICK_TOKEN_SECRET` is set. `make run` generates one")
    CLICK_TOKEN_SECRET: str = Field("", description="HMAC key of click tokens; empty: `SECRET_KEY`")
    CLICK_WINDOW_SECONDS: Count = Field(24 * 3600, description="a click is accepted this long after its "
                                                               "impression")
    CACHE_REFRESH_SECONDS: Seconds = Field(1.0, description="how often each worker reads the change feed and "
                                                            "re-reads the held slots named there (configuration, "
                                                            "counters, priors)")
    CACHE_SAFETY_REFRESH_SECONDS: Seconds = Field(
        60.0, description="how often each worker re-reads every slot it holds whether or not the change feed "
                          "named it: the longest a lost feed row can delay a change")
    DECAY_REFRESH_SECONDS: Seconds = Field(
        30.0, description="how often each worker re-reads its held slots that decay (their decayed counts change "
                          "with time alone; their traffic reaches them through the change feed)")
    SLOT_LOAD_TIMEOUT_SECONDS: Seconds = Field(
        1.0, description="longest wait of a slot's first serve in a worker for its partition reads; when "
                          "Cassandra cannot answer in time the serve is a 503 with `Retry-After`")
    SLOT_IDLE_SECONDS: Seconds = Field(300.0, description="a worker drops a slot not served for this long")
    SLOT_CACHE_MAX: Count = Field(10_000, description="most slots a worker holds (the least recently served "
                                                      "go first)")
    SLOT_NOT_FOUND_SECONDS: Seconds = Field(
        1.0, description="how long a worker remembers that a slot or tenant does not exist (at most until its "
                         "next refresh), so unknown-slot requests do not each read Cassandra")
    IMPRESSION_WRITE_SECONDS: Seconds = Field(
        0.5, description="how often each worker sends its queued impressions (already in the spool); longer "
                         "means larger batches and less of Cassandra's CPU per impression")
    IMPRESSION_BATCH_ROWS: Count = Field(256, description="rows per UNLOGGED single-partition batch (one "
                                                          "mutation)")
    COUNTER_FLUSH_SECONDS: Seconds = Field(0.5, description="how often each worker writes its aggregated counters")
    PROPENSITY_DRAWS: Count = Field(
        4096, description="largest block of Thompson draws precomputed per slot, location and snapshot; the "
                          "block's win frequencies are the logged propensities")
    CONTEXT_MAX_LEVELS: Annotated[int, Field(ge=2, le=1000)] = Field(
        16, description="contextual slots: most levels per open context feature (location, referrer, segment), "
                        "`other` included; further values are served and counted as `other`")
    RANDOM_SEED: Annotated[Annotated[int, Field(ge=0)] | None, BeforeValidator(_blank_is_none)] = Field(
        None, description="seed of each process's sampler; empty: fresh entropy")
    STALE_AFTER_SECONDS: Seconds = Field(5.0, description="posteriors older than this are flagged in "
                                                          "`X-Banner-Bandit-Stale`")
    TRUSTED_PROXIES: Annotated[int, Field(ge=0)] = Field(
        0, description="reverse proxies in front whose `X-Forwarded-For`/`-Proto`/`-Host` to trust (the client "
                       "address of the rate limits, https URLs); 0: gunicorn and Flask ignore those headers")
    ALLOWED_HOSTS: HostNames = Field(
        "", description="host names the server answers to (comma-separated; `.example.com` also matches its "
                        "subdomains); any other `Host` is answered 400. Always included: `localhost`, "
                        "`127.0.0.1` and the host of `PUBLIC_BASE_URL`")
    DEFAULT_TIMEZONE: Annotated[str, AfterValidator(_timezone)] = Field(
        "Asia/Kolkata", description="time zone of a tenant created without one")
    BACKGROUND_THREADS: bool = Field(True, description="each process refreshes and flushes in a background "
                                                       "thread (tests turn it off and drive both by hand)")


class SpoolSettings(_Group):
    """Event spool

    Each process keeps the events Cassandra has not taken yet in a durable spool of its own.
    """

    SPOOL_DIR: str = Field("", description="where each worker keeps its spool; empty: `instance/spool`")
    SPOOL_MAX_BYTES: Count = Field(256 * 1024 * 1024, description="spool size per worker; when full, serve and "
                                                                  "click answer 503 and `banner_bandit_spool_full` "
                                                                  "is 1")
    SPOOL_FSYNC_SECONDS: Seconds = Field(0.2, description="group-commit interval of the spool")
    SPOOL_SEGMENT_SECONDS: Seconds = Field(5.0, description="spool segment rotation; a segment is deleted once "
                                                            "all its events are in Cassandra")
    REPLAY_SECONDS: Seconds = Field(2.0, description="how often a worker looks for spool segments of dead "
                                                     "processes to replay")


class InputLimitSettings(_Group):
    """Input limits"""

    MAX_PARAM_LENGTH: Count = Field(128, description="longest `location`, `customer_id`, `referrer_id`")
    MAX_CONTENT_LENGTH: Count = Field(64 * 1024, description="largest request body in bytes; a larger one is "
                                                             "answered 413")
    MAX_BANNERS_PER_SLOT: Count = Field(50, description="most banners in a slot (paused ones count); creating "
                                                        "one more is answered 409")


class RateLimitSettings(_Group):
    """Rate limits

    Per client IP address, with the `limits` package (Flask-Limiter for the dashboard's login). A limit is
    `N/second`, `N/minute`, `N/hour` or `N/day`; several are joined by `;`.
    """

    RATELIMIT_ENABLED: bool = Field(True, description="per-client rate limits on `/v1/serve`, `/v1/embed` and "
                                                      "`/v1/click`")
    RATELIMIT_SERVE: RateLimit = Field("6000/minute", description="limit per client for serve and embed "
                                                                  "together")
    RATELIMIT_CLICK: RateLimit = Field("600/minute", description="limit per client for both click endpoints "
                                                                 "together")
    RATELIMIT_STRATEGY: Annotated[str, AfterValidator(OneOf(STRATEGIES))] = Field(
        "fixed-window", description="the `limits` strategy of every limit")
    RATELIMIT_STORAGE_URI: StorageUri = Field(
        "memory://", description="where the counts live: `memory://` is per gunicorn worker; "
                                 "`redis://host:6379` (or `memcached://…`) shares them between workers and machines")
    RATELIMIT_HEADERS_ENABLED: bool = Field(False, description="`X-RateLimit-Limit/-Remaining/-Reset` on every "
                                                               "limited response (a 429 always has `Retry-After`)")
    RATELIMIT_SWALLOW_ERRORS: bool = Field(True, description="an unreachable limit storage lets requests through "
                                                             "(logged) rather than failing them")


class DashboardSettings(_Group):
    """Dashboard (`/admin`)"""

    SESSION_COOKIE_SAMESITE: Annotated[str, AfterValidator(OneOf(("Lax", "Strict", "None")))] = Field(
        "Lax", description="SameSite of the session cookie (always HttpOnly)")
    SESSION_COOKIE_SECURE: bool = Field(False, description="set true when the dashboard is served over HTTPS")
    PERMANENT_SESSION_LIFETIME: Count = Field(12 * 3600, description="seconds a dashboard login lasts")
    LOGIN_RATE_LIMIT: RateLimit = Field("10/minute", description="failed logins for one username from one client "
                                                                 "address (other addresses are not locked out)")
    LOGIN_ADDRESS_RATE_LIMIT: RateLimit = Field("30/minute", description="failed logins from one client address, "
                                                                         "whatever usernames are tried")
    MAX_IMAGE_BYTES: Count = Field(512 * 1024, description="largest banner image upload")
    PUBLIC_BASE_URL: BaseUrl = Field(
        "", description="public base URL of the service (`https://ads.example.com`): of click URLs, uploaded "
                        "image URLs and embed snippets, whatever a request's `Host` says; empty: the request's "
                        "own (its host one of `ALLOWED_HOSTS`). `make run` sets its printed address")


class GunicornSettings(_Group):
    """gunicorn (gunicorn.conf.py)"""

    BIND_HOST: Annotated[str, AfterValidator(_host)] = Field(
        "127.0.0.1", description="address the server listens on (`0.0.0.0` or `::` for every interface)")
    PORT: Port = Field(8000, description="port the server listens on")
    WEB_CONCURRENCY: Annotated[Count | None, BeforeValidator(_blank_is_none)] = Field(
        None, description="gunicorn sync workers; empty: one per core, at least 2 (a serve is CPU-bound)")
    GUNICORN_ACCESS_LOG: str = Field("", description="gunicorn's access log file (`-`: standard output); empty: "
                                                     "none")
    GUNICORN_WORKER_TMP_DIR: str = Field(
        "", description="gunicorn's `worker_tmp_dir` (the heartbeat file a sync worker touches before every "
                        "request); empty: `/dev/shm` when writable, a RAM filesystem without a journal to wait on")
    PROMETHEUS_MULTIPROC_DIR: str = Field(
        "", description="where the workers write their Prometheus samples for `/metrics` to sum; empty: a fresh "
                        "directory per server start, made by gunicorn.conf.py (in `/dev/shm` when writable)")
    METRICS_TOKEN: str = Field(
        "", description="bearer token that lets a scraper read `/metrics` from any address "
                        "(`Authorization: Bearer …`); empty: none")
    METRICS_ALLOW_FROM: Networks = Field(
        "127.0.0.0/8,::1/128", description="client networks that may read `/metrics` without the token "
                                           "(comma-separated CIDRs; empty: none); others get 403")


class SparkSettings(_Group):
    """Spark jobs (spark_jobs/)

    Under `spark-submit`, its `--master`, `--jars` and `--packages` win over these.
    """

    SPARK_MASTER: Annotated[str, Field(min_length=1)] = Field("local[2]", description="master of the Spark jobs")
    SPARK_DRIVER_MEMORY: JvmMemory = Field(
        "1g", description="driver memory of the Spark jobs (the executor's too, in local mode)")
    SPARK_SHUFFLE_PARTITIONS: Count = Field(4, description="`spark.sql.shuffle.partitions` of the Spark jobs")


class PriorSettings(_Group):
    """City priors (spark_jobs/city_priors.py)"""

    CITY_PRIOR_MAX_STRENGTH: Annotated[float, Field(gt=0)] = Field(
        200.0, description="cap on a fitted prior's α + β, in pseudo-impressions: live data outweighs a wrong "
                           "prior after that many impressions")
    CITY_PRIOR_MIN_STRENGTH: Annotated[float, Field(gt=0)] = Field(
        2.0, description="floor of a fitted prior's α + β (slots whose cities disagree wildly)")
    CITY_PRIOR_WINDOW_DAYS: Count = Field(90, description="default window of the priors job (`--days`)")

    @model_validator(mode="after")
    def _floor_below_cap(self) -> PriorSettings:
        if self.CITY_PRIOR_MIN_STRENGTH > self.CITY_PRIOR_MAX_STRENGTH:
            raise ValueError(f"CITY_PRIOR_MIN_STRENGTH={self.CITY_PRIOR_MIN_STRENGTH} is above "
                             f"CITY_PRIOR_MAX_STRENGTH={self.CITY_PRIOR_MAX_STRENGTH}")
        return self


class Settings(CassandraSettings, ServingSettings, SpoolSettings, InputLimitSettings, RateLimitSettings,
               DashboardSettings, GunicornSettings, SparkSettings, PriorSettings):
    """Every setting of Banner Bandit: the groups' fields together."""


GROUPS: tuple[type[_Group], ...] = Settings.__bases__      # in this order in docs/configuration.md


def _names_in_order() -> Iterable[str]:
    for group in GROUPS:
        yield from vars(group)["__annotations__"]


def read(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings: defaults < ``environ`` (``os.environ`` if None) < ``overrides``, validated.

    Raises :class:`ConfigError` naming every invalid variable. ``overrides`` holds settings only.
    """
    values = dict(overrides or {})
    if environ is not None:
        # Every field given, so pydantic-settings' own environment source (os.environ) has nothing to add.
        given = {name: environ[name] for name in Settings.model_fields if name in environ}
        values = {**{name: field.get_default() for name, field in Settings.model_fields.items()}, **given, **values}
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None


def load(overrides: dict[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The Flask configuration: the settings (defaults < environment < ``overrides``) and any other keys of
    ``overrides`` as they are (TESTING, …). CLICK_TOKEN_SECRET falls back to SECRET_KEY."""
    overrides = overrides or {}
    settings = read({k: v for k, v in overrides.items() if k in Settings.model_fields}, environ)
    config = {**settings.model_dump(), **{k: v for k, v in overrides.items() if k not in Settings.model_fields}}
    if not config["CLICK_TOKEN_SECRET"]:
        config["CLICK_TOKEN_SECRET"] = config["SECRET_KEY"]
    return config


def default(name: str) -> Any:
    """A setting's default (for a keyword default outside the app, e.g. ``max_banners``)."""
    return Settings.model_fields[name].get_default()


def _explain(exc: ValidationError) -> str:
    lines = []
    order = list(_names_in_order())
    for error in sorted(exc.errors(include_url=False), key=lambda e: order.index(e["loc"][0]) if e["loc"] else -1):
        message = error["msg"].removeprefix("Value error, ")
        if error["loc"]:
            lines.append(f"{error['loc'][0]}={error['input']!r}: {message}")
        else:
            lines.append(message)
    return "invalid configuration:\n  " + "\n  ".join(lines)


# -- docs/configuration.md ---------------------------------------------------------------------------------------

INTRO = """\
# Configuration

<!-- Generated by `make docs-config` (python -m webapp.web.config --markdown) from webapp/web/config.py;
     tests/test_config.py fails when this file differs. Edit the settings there, then regenerate. -->

Banner Bandit reads its settings from environment variables of these names, and only there (no `.env`
file): the server, `gunicorn.conf.py` and the Spark jobs alike, through one typed definition
(`webapp.web.config.Settings`). Each setting is its default unless the environment sets it; the tests build
apps with a dict of overrides that wins over both. A value that is not valid stops the start with a message
naming the variable and what it allows; `python -m webapp.web.config` checks the current environment.

`make run` generates `ADMIN_API_TOKEN` and `SECRET_KEY` once into `.run/env` (git-ignored, mode 600) and
uses them unless they are set in the environment; the dashboard's demo password is kept there too.

To use a Cassandra cluster instead of the local one, point `CASSANDRA_HOSTS` at its contact points (with
`CASSANDRA_PORT`, `CASSANDRA_LOCAL_DC`, `CASSANDRA_USERNAME`/`CASSANDRA_PASSWORD` and
`CASSANDRA_REPLICATION` as it needs): `make` then neither downloads nor starts a local Cassandra.
"""

OUTRO = """\
## Read by the scripts, not the app

`scripts/cassandra.sh` (the local Cassandra of `make run` and the tests) reads `CASSANDRA_HEAP` (`1G`),
`CASSANDRA_NICE` (`10`: its CPU priority below the web server's; `0` turns that off), `CASSANDRA_PORT`,
`CASSANDRA_STORAGE_PORT` (`7000`), `CASSANDRA_JMX_PORT` (`7199`), `CASSANDRA_START_TIMEOUT` (`180` s),
`CASSANDRA_HOME` (`.cassandra`) and `CASSANDRA_LIB`. `scripts/spark.sh` keeps the Spark Cassandra connector
in `SPARK_JARS_DIR` (`.spark/jars`). The Makefile's own variables (`PYTHON_SYS`, `SEEDS`, `*_ARGS`, …) are
described by `make help`.
"""

_BOUNDS = ((annotated_types.Gt, "gt", ">"), (annotated_types.Ge, "ge", "≥"),
           (annotated_types.Lt, "lt", "<"), (annotated_types.Le, "le", "≤"))
_TYPE_NAMES = {_rate_limit: "rate limit", _timezone: "IANA time zone", _host: "host"}


def _type_text(annotation: Any, metadata: list[Any]) -> str:
    args = [a for a in get_args(annotation) if a is not type(None)]
    optional = len(args) < len(get_args(annotation))
    base = args[0] if optional else annotation
    if hasattr(base, "__metadata__"):                      # Annotated inside the Optional
        metadata = [*metadata, *base.__metadata__]
        base = get_args(base)[0]
    metadata = [m for item in metadata for m in getattr(item, "metadata", [item])]   # a FieldInfo's own
    validators = [getattr(item, "func", None) for item in metadata]
    for func in validators:
        if isinstance(func, OneOf):
            return "one of " + ", ".join(f"`{c}`" for c in func.choices)
    text = next((_TYPE_NAMES[f] for f in validators if f in _TYPE_NAMES), base.__name__)
    bounds = {attr: getattr(m, attr) for m in metadata for kind, attr, _ in _BOUNDS if isinstance(m, kind)}
    if "ge" in bounds and "le" in bounds:
        text += f" {bounds['ge']}–{bounds['le']}"
    else:
        text += "".join(f" {sign} {bounds[attr]}" for _, attr, sign in _BOUNDS if attr in bounds)
    return text + (", or empty" if optional else "")


def _default_text(value: Any) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def markdown() -> str:
    """docs/configuration.md: the intro, then one table per group of settings."""
    parts = [INTRO]
    for group in GROUPS:
        title, _, intro = (group.__doc__ or "").partition("\n")
        parts.append(f"## {title.strip()}\n")
        if intro.strip():
            parts.append(" ".join(intro.split()) + "\n")
        rows = ["| variable | type | default | meaning |", "|---|---|---|---|"]
        for name in vars(group)["__annotations__"]:
            field = Settings.model_fields[name]
            rows.append(f"| `{name}` | {_type_text(field.annotation, field.metadata)} | "
                        f"{_default_text(field.default)} | {field.description} |")
        parts.append("\n".join(rows) + "\n")
    parts.append(OUTRO)
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webapp.web.config",
                                     description="Check the environment's settings, or print their reference.")
    parser.add_argument("--markdown", action="store_true", help="print docs/configuration.md")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown())
        return 0
    try:
        read()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print("configuration OK")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
