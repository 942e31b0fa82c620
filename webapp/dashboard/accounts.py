"""Dashboard accounts: users in Cassandra, argon2id password hashes (argon2-cffi), two roles.

A platform admin manages every tenant; a tenant admin only their own. Nothing here knows Flask: the CLI and
the dashboard call the same functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from webapp.storage import store
from webapp.storage.database import Database
from webapp.web import validation
from webapp.web.errors import InvalidInput

ROLE_PLATFORM = "platform"
ROLE_TENANT = "tenant"
ROLES = (ROLE_PLATFORM, ROLE_TENANT)
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.@\-]{0,63}$")
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256

# argon2id with argon2-cffi's defaults (RFC 9106 "low memory" profile); hashes carry their parameters, so
# raising them later rehashes each user's password at their next login.
_hasher = PasswordHasher()


@dataclass(frozen=True)
class User:
    username: str
    role: str
    tenant_id: str          # '' for a platform admin

    @property
    def is_platform_admin(self) -> bool:
        return self.role == ROLE_PLATFORM

    def can_manage(self, tenant_id: str) -> bool:
        return self.is_platform_admin or (self.role == ROLE_TENANT and self.tenant_id == tenant_id)


def normalize_username(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput("username must be a string")
    username = value.strip().casefold()
    if not USERNAME_RE.match(username):
        raise InvalidInput("username must be 1-64 of letters, digits, '_', '.', '@' or '-', starting with a "
                           "letter or digit")
    return username


def check_password(value: Any) -> str:
    if not isinstance(value, str) or not (MIN_PASSWORD_LENGTH <= len(value) <= MAX_PASSWORD_LENGTH):
        raise InvalidInput(f"password must be {MIN_PASSWORD_LENGTH}-{MAX_PASSWORD_LENGTH} characters")
    return value


def _user(row: dict[str, Any]) -> User:
    return User(row["username"], row["role"], row["tenant_id"] or "")


def create_user(db: Database, username: Any, password: Any, role: Any, tenant_id: Any = "", *,
                replace: bool = False) -> tuple[bool, User]:
    """Create a user (or, with ``replace``, overwrite one of that name). Returns (written, user); written is
    False when the user exists and ``replace`` is false."""
    username = normalize_username(username)
    password = check_password(password)
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    if role == ROLE_TENANT:
        if not isinstance(tenant_id, str) or not tenant_id:
            raise InvalidInput("a tenant admin needs a tenant")
        validation.identifier(tenant_id, "tenant")
        if store.get_tenant(db, tenant_id) is None:
            raise InvalidInput(f"unknown tenant {tenant_id}")
    else:
        tenant_id = ""
    written = store.put_user(db, username, _hasher.hash(password), role, tenant_id, replace=replace)
    return written, User(username, role, tenant_id)


def get_user(db: Database, username: str) -> User | None:
    try:
        username = normalize_username(username)
    except InvalidInput:
        return None
    row = store.get_user(db, username)
    return _user(row) if row and row["role"] in ROLES else None


def list_users(db: Database) -> list[dict[str, Any]]:
    return [{"username": r["username"], "role": r["role"], "tenant": r["tenant_id"] or "",
             "created_at": r["created_at"]} for r in store.list_users(db)]


@cache
def _dummy_hash() -> str:
    return _hasher.hash("not-a-password-of-anyone")


def authenticate(db: Database, username: Any, password: Any) -> User | None:
    """The user when the password matches, else None. Unknown users cost one hash verification too, so
    response time does not tell which usernames exist."""
    if not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
        return None
    try:
        row = store.get_user(db, normalize_username(username))
    except InvalidInput:
        row = None
    stored = row["password_hash"] if row else _dummy_hash()
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row["role"] not in ROLES:
        return None
    if _hasher.check_needs_rehash(stored):
        store.set_password_hash(db, row["username"], _hasher.hash(password))
    return _user(row)
