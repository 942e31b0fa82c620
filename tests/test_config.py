"""The settings (webapp.web.config): defaults, the environment's coercion and validation, precedence, and the
reference in docs/configuration.md generated from them. Pure: no Cassandra, no server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from webapp import create_app
from webapp.web import config

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_when_the_environment_sets_nothing():
    loaded = config.load(environ={})
    assert loaded["CASSANDRA_HOSTS"] == "127.0.0.1"
    assert loaded["CASSANDRA_PORT"] == 9042
    assert loaded["CASSANDRA_CONSISTENCY"] == "LOCAL_QUORUM"
    assert loaded["RATELIMIT_STRATEGY"] == "fixed-window"
    assert loaded["RATELIMIT_SERVE"] == "6000/minute"
    assert loaded["CLICK_WINDOW_SECONDS"] == 86400
    assert loaded["SPOOL_MAX_BYTES"] == 256 * 1024 * 1024
    assert loaded["RANDOM_SEED"] is None
    assert loaded["WEB_CONCURRENCY"] is None
    assert loaded["PORT"] == 8000 and loaded["BIND_HOST"] == "127.0.0.1"
    assert loaded["RATELIMIT_ENABLED"] is True and loaded["SESSION_COOKIE_SECURE"] is False
    assert loaded["CLICK_TOKEN_SECRET"] == loaded["SECRET_KEY"] == "dev-only-secret-change-me"
    assert set(loaded) == set(config.Settings.model_fields)
    assert config.default("MAX_BANNERS_PER_SLOT") == loaded["MAX_BANNERS_PER_SLOT"] == 50


def test_environment_values_are_coerced_to_the_settings_types():
    loaded = config.load(environ={
        "CASSANDRA_PORT": "9142", "IMPRESSION_BATCH_ROWS": "64", "CACHE_REFRESH_SECONDS": "0.25",
        "CITY_PRIOR_MAX_STRENGTH": "150", "RATELIMIT_ENABLED": "false", "RATELIMIT_SWALLOW_ERRORS": "0",
        "SESSION_COOKIE_SECURE": "true", "RATELIMIT_HEADERS_ENABLED": "1", "RANDOM_SEED": "7", "WEB_CONCURRENCY": "3",
        "CASSANDRA_HOSTS": "10.0.0.1,10.0.0.2", "UNRELATED": "ignored"})
    assert loaded["CASSANDRA_PORT"] == 9142 and loaded["IMPRESSION_BATCH_ROWS"] == 64
    assert loaded["CACHE_REFRESH_SECONDS"] == 0.25 and loaded["CITY_PRIOR_MAX_STRENGTH"] == 150.0
    assert isinstance(loaded["CITY_PRIOR_MAX_STRENGTH"], float)
    assert loaded["RATELIMIT_ENABLED"] is False and loaded["RATELIMIT_SWALLOW_ERRORS"] is False
    assert loaded["SESSION_COOKIE_SECURE"] is True and loaded["RATELIMIT_HEADERS_ENABLED"] is True
    assert loaded["RANDOM_SEED"] == 7 and loaded["WEB_CONCURRENCY"] == 3
    assert loaded["CASSANDRA_HOSTS"] == "10.0.0.1,10.0.0.2"
    assert "UNRELATED" not in loaded


@pytest.mark.parametrize("raw,expected", [("true", True), ("1", True), ("yes", True), ("on", True),
                                          ("false", False), ("0", False), ("no", False), ("off", False)])
def test_booleans_read_the_usual_words(raw, expected):
    assert config.read(environ={"BACKGROUND_THREADS": raw}).BACKGROUND_THREADS is expected


def test_an_empty_optional_number_means_not_set():
    settings = config.read(environ={"RANDOM_SEED": "", "WEB_CONCURRENCY": " "})
    assert settings.RANDOM_SEED is None and settings.WEB_CONCURRENCY is None


def test_overrides_win_over_the_environment_and_other_keys_pass_through():
    loaded = config.load({"CASSANDRA_PORT": 9300, "TESTING": True, "RATELIMIT_STORAGE_OPTIONS": {"a": 1}},
                         environ={"CASSANDRA_PORT": "9200", "CASSANDRA_KEYSPACE": "from_env"})
    assert loaded["CASSANDRA_PORT"] == 9300
    assert loaded["CASSANDRA_KEYSPACE"] == "from_env"
    assert loaded["TESTING"] is True and loaded["RATELIMIT_STORAGE_OPTIONS"] == {"a": 1}


def test_click_token_secret_falls_back_to_secret_key_only_when_empty():
    assert config.load(environ={"SECRET_KEY": "s3"})["CLICK_TOKEN_SECRET"] == "s3"
    assert config.load(environ={"SECRET_KEY": "s3", "CLICK_TOKEN_SECRET": "c"})["CLICK_TOKEN_SECRET"] == "c"


def test_without_environ_the_process_environment_is_read(monkeypatch):
    monkeypatch.setenv("CASSANDRA_PORT", "9555")
    monkeypatch.setenv("RATELIMIT_STRATEGY", "moving-window")
    monkeypatch.setenv("cassandra_keyspace", "lower_case_is_another_variable")
    loaded = config.load({"SECRET_KEY": "x"})
    assert loaded["CASSANDRA_PORT"] == 9555
    assert loaded["RATELIMIT_STRATEGY"] == "moving-window"
    assert loaded["CASSANDRA_KEYSPACE"] == "banner_bandit"
    # An explicit environ replaces the process's environment entirely.
    assert config.load(environ={})["CASSANDRA_PORT"] == 9042


@pytest.mark.parametrize("name,value,allowed", [
    ("CASSANDRA_PORT", "abc", "valid integer"),
    ("PORT", "70000", "less than or equal to 65535"),
    ("CASSANDRA_KEYSPACE", "bad-name", "keyspace name"),
    ("CASSANDRA_REPLICATION", "dc1", "dc1:N,dc2:N"),
    ("CASSANDRA_CONSISTENCY", "MOST", "one of ANY, ONE, .*LOCAL_QUORUM"),
    ("CACHE_REFRESH_SECONDS", "0", "greater than 0"),
    ("IMPRESSION_BATCH_ROWS", "-1", "greater than or equal to 1"),
    ("RATELIMIT_SERVE", "lots", "not a rate limit such as '600/minute'"),
    ("LOGIN_RATE_LIMIT", "10 per fortnight", "not a rate limit"),
    ("RATELIMIT_STRATEGY", "leaky-bucket", "one of .*fixed-window.*moving-window"),
    ("RATELIMIT_STORAGE_URI", "redis", "storage URI"),
    ("DEFAULT_TIMEZONE", "Asia", "IANA time zone"),
    ("SESSION_COOKIE_SAMESITE", "lax", "one of Lax, Strict, None"),
    ("BACKGROUND_THREADS", "maybe", "valid boolean"),
    ("WEB_CONCURRENCY", "0", "greater than or equal to 1"),
    ("BIND_HOST", "my host", "IP address or a host name"),
    ("PUBLIC_BASE_URL", "example.com", "http"),
    ("SPARK_DRIVER_MEMORY", "lots", "JVM memory size"),
])
def test_an_invalid_value_names_the_variable_and_what_it_allows(name, value, allowed):
    with pytest.raises(config.ConfigError, match=rf"{name}={re.escape(repr(value))}: .*{allowed}"):
        config.load(environ={name: value})


def test_every_invalid_variable_is_reported_at_once():
    with pytest.raises(config.ConfigError) as raised:
        config.load(environ={"CASSANDRA_PORT": "abc", "RATELIMIT_SERVE": "lots", "PORT": "0"})
    message = str(raised.value)
    assert message.startswith("invalid configuration:")
    assert message.index("CASSANDRA_PORT=") < message.index("RATELIMIT_SERVE=") < message.index("PORT='0'")


def test_prior_strength_floor_above_its_cap_is_refused():
    with pytest.raises(config.ConfigError, match="CITY_PRIOR_MIN_STRENGTH=300.0 is above CITY_PRIOR_MAX_STRENGTH"):
        config.load(environ={"CITY_PRIOR_MIN_STRENGTH": "300"})


def test_invalid_overrides_are_refused_too():
    with pytest.raises(config.ConfigError, match="MAX_PARAM_LENGTH=0"):
        config.load({"MAX_PARAM_LENGTH": 0}, environ={})


def test_ratelimit_strategy_from_the_environment_takes_effect(monkeypatch):
    """It was documented but never read (config.load knew only its DEFAULTS' keys)."""
    app = create_app({"CASSANDRA_KEYSPACE": "unused"})
    assert isinstance(app.extensions["client_limits"].strategy, FixedWindowRateLimiter)
    monkeypatch.setenv("RATELIMIT_STRATEGY", "moving-window")
    app = create_app({"CASSANDRA_KEYSPACE": "unused"})
    assert app.config["RATELIMIT_STRATEGY"] == "moving-window"
    assert isinstance(app.extensions["client_limits"].strategy, MovingWindowRateLimiter)


def test_the_app_does_not_start_with_an_invalid_environment(monkeypatch):
    monkeypatch.setenv("RATELIMIT_STRATEGY", "leaky-bucket")
    with pytest.raises(config.ConfigError, match="RATELIMIT_STRATEGY='leaky-bucket'"):
        create_app({"CASSANDRA_KEYSPACE": "unused"})


def test_gunicorn_conf_reads_its_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("BIND_HOST", "::1")
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("GUNICORN_ACCESS_LOG", "-")
    namespace = _exec_gunicorn_conf()
    assert namespace["bind"] == "[::1]:8123"
    assert namespace["workers"] == 3
    assert namespace["accesslog"] == "-"
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(config.ConfigError, match="PORT='eighty'"):
        _exec_gunicorn_conf()


def _exec_gunicorn_conf() -> dict:
    namespace: dict = {"__file__": str(ROOT / "gunicorn.conf.py")}
    exec(compile((ROOT / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec"), namespace)
    return namespace


def test_docs_configuration_md_is_generated_from_the_settings():
    documented = (ROOT / "docs" / "configuration.md").read_text()
    assert documented == config.markdown(), "docs/configuration.md is stale: run `make docs-config`"


def test_the_reference_lists_every_setting_with_its_default():
    reference = config.markdown()
    for name, field in config.Settings.model_fields.items():
        assert field.description, f"{name} has no description"
        row = next(line for line in reference.splitlines() if line.startswith(f"| `{name}` |"))
        if field.default not in (None, ""):
            assert f"`{str(field.default).lower() if isinstance(field.default, bool) else field.default}`" in row
    assert "| `PORT` | int 1–65535 | `8000` |" in reference
    assert "| `RATELIMIT_STRATEGY` | one of " in reference and "`moving-window`" in reference
