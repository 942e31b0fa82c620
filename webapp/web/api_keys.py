"""Who is calling: the platform token or a tenant's API key, decided in one place.

:func:`authenticate` turns a request's ``Authorization: Bearer …`` header into a :class:`Principal`:

* the platform token (``ADMIN_API_TOKEN``) → ``Principal.platform()``: every tenant, every operation;
* a tenant key ``bb_<key id>_<secret>`` → a principal of that tenant with the key's scopes
  (``read``: GETs, ``write``: configuration changes, ``events``: server-side clicks).

:meth:`Principal.require` is the one rule for every management endpoint: a tenant key on another tenant's
path → 403 (whether that tenant exists or not, so a key learns nothing about other tenants), a missing scope
→ 403, a platform-only operation (creating, deleting or listing tenants) → 403.

Keys are 256-bit random secrets, so the table stores their SHA-256 (hashlib) and compares in constant time
(hmac.compare_digest): a slow password hash (argon2, as for dashboard passwords) defends guessable secrets
against offline guessing, and a random 256-bit secret cannot be guessed; it would only add tens of
milliseconds to every server-side click. A server keeps what it read about a key for
``API_KEY_CACHE_SECONDS``, so a revoked key stops working everywhere within that time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from flask import Flask, Request, current_app

from webapp.storage import store
from webapp.storage.database import Database
from webapp.web.errors import DATABASE_UNAVAILABLE, Forbidden, Unauthorized

SCOPES = ("read", "write", "events")
KEY_PREFIX = "bb"
KEY_RE = re.compile(r"^bb_([0-9a-f]{16})_([A-Za-z0-9_\-]{43})$")
TOUCH_EVERY = dt.timedelta(minutes=1)      # last_used_at is written at most this often per key and server


@dataclass(frozen=True)
class Principal:
    """The caller: the platform (tenant_id None, every scope) or one tenant's key."""

    tenant_id: str | None
    scopes: frozenset[str]
    key_id: str | None = None

    @classmethod
    def platform(cls) -> Principal:
        return cls(None, frozenset(SCOPES))

    @property
    def is_platform(self) -> bool:
        return self.tenant_id is None

    def require(self, scope: str, tenant_id: str | None = None) -> None:
        """Allow ``scope`` on ``tenant_id``'s resources (None: a platform-only operation), else Forbidden."""
        if self.is_platform:
            return
        if tenant_id is None:
            raise Forbidden("only the platform token may do this (a tenant API key works on its own tenant)")
        if tenant_id != self.tenant_id:
            raise Forbidden(f"this API key belongs to another tenant; it works only under "
                            f"/v1/admin/tenants/{self.tenant_id}")
        if scope not in self.scopes:
            raise Forbidden(f"this API key lacks the '{scope}' scope (it has: {', '.join(sorted(self.scopes))})")


def new_key() -> tuple[str, str, str]:
    """(key id, the key to hand out once, the hash to store)."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)          # 43 characters, 256 bits
    return key_id, f"{KEY_PREFIX}_{key_id}_{secret}", secret_hash(secret)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class _Cached:
    row: dict[str, Any] | None          # None: no such key (revoked or never made)
    read_at: float
    touched_at: dt.datetime | None = None


class KeyCache:
    """What this process read about keys, each trusted for ``ttl`` seconds (API_KEY_CACHE_SECONDS)."""

    def __init__(self, ttl: float, max_keys: int = 10_000) -> None:
        self.ttl = ttl
        self.max_keys = max_keys
        self._keys: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def lookup(self, db: Database, key_id: str) -> _Cached:
        now = time.monotonic()
        with self._lock:
            cached = self._keys.get(key_id)
        if cached is not None and now - cached.read_at < self.ttl:
            return cached
        fresh = _Cached(store.get_api_key(db, key_id), now, cached.touched_at if cached else None)
        with self._lock:
            if len(self._keys) >= self.max_keys:
                self._keys.clear()
            self._keys[key_id] = fresh
        return fresh

    def forget(self, key_id: str) -> None:
        with self._lock:
            self._keys.pop(key_id, None)


def _cache(app: Flask) -> KeyCache:
    cache = app.extensions.get("api_keys")
    if cache is None:
        cache = app.extensions.setdefault("api_keys", KeyCache(app.config["API_KEY_CACHE_SECONDS"]))
    return cache


def bearer(request: Request) -> str | None:
    """The bearer credential of the request; None without an Authorization header."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <ADMIN_API_TOKEN or API key>'")
    return given.strip()


def authenticate(request: Request, *, required: bool = True) -> Principal | None:
    """The caller of ``request`` (module doc). Without an Authorization header: Unauthorized, or None when
    not ``required``. A wrong token or key: Unauthorized."""
    given = bearer(request)
    if given is None:
        if required:
            raise Unauthorized("missing bearer token: send 'Authorization: Bearer <ADMIN_API_TOKEN or API key>'")
        return None
    match = KEY_RE.fullmatch(given)
    if match is None:
        expected = current_app.config["ADMIN_API_TOKEN"]
        if expected and hmac.compare_digest(given.encode(), expected.encode()):
            return Principal.platform()
        raise Unauthorized("wrong bearer token (neither the platform token nor a valid API key)")
    key_id, secret = match[1], match[2]
    db = current_app.extensions["cassandra"]
    cached = _cache(current_app).lookup(db, key_id)
    row = cached.row
    if row is None or not hmac.compare_digest(secret_hash(secret).encode(), (row["secret_hash"] or "").encode()):
        raise Unauthorized("wrong bearer token: unknown or revoked API key")
    now = store.utcnow()
    if cached.touched_at is None or now - cached.touched_at >= TOUCH_EVERY:
        cached.touched_at = now
        try:
            store.touch_api_key(db, key_id, now)
        except DATABASE_UNAVAILABLE:    # last_used_at is a hint: never fail the request for it
            current_app.logger.warning("could not record the use of API key %s", key_id)
    return Principal(row["tenant_id"], frozenset(row["scopes"] or ()), key_id)


def forget(app: Flask, key_id: str) -> None:
    """Drop a key from this process's cache at once (the process that revoked it)."""
    _cache(app).forget(key_id)
