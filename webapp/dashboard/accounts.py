"""Dashboard accounts: users in Cassandra, argon2id password hashes (argon2-cffi), two roles.

A platform admin manages every tenant; a tenant admin only their own. Nothing here knows Flask: the CLI and
the dashboard call the same functions.

Sessions: each user has a random ``session_epoch``, copied into the session cookie at login and compared on
every request (webapp.dashboard.auth). Logging out, changing or resetting the password, and disabling the user
replace it, so every session of that user ends on every worker at once; deleting the user ends them too.
Passwords are judged by zxcvbn (Dropbox's strength estimator: dictionaries of common passwords, names and
words, keyboard patterns, repeats, sequences, dates), the username and tenant counted as known words.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn

from webapp.storage import store
from webapp.storage.database import Database
from webapp.web import validation
from webapp.web.errors import Conflict, InvalidInput, NotFound

ROLE_PLATFORM = "platform"
ROLE_TENANT = "tenant"
ROLES = (ROLE_PLATFORM, ROLE_TENANT)
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
MIN_PASSWORD_SCORE = 3          # zxcvbn's 0-4: 3 is "safely unguessable", ~10^8 guesses and more
ZXCVBN_MAX_LENGTH = 100         # zxcvbn's cost grows with length; a longer password is judged by its head

# argon2id with argon2-cffi's defaults (RFC 9106 "low memory" profile); hashes carry their parameters, so
# raising them later rehashes each user's password at their next login.
_hasher = PasswordHasher()


@dataclass(frozen=True)
class User:
    username: str
    role: str
    tenant_id: str          # '' for a platform admin
    session_epoch: str = dataclasses.field(default="", compare=False, repr=False)
    disabled: bool = False
    must_change_password: bool = False

    @property
    def is_platform_admin(self) -> bool:
        return self.role == ROLE_PLATFORM

    def can_manage(self, tenant_id: str) -> bool:
        return self.is_platform_admin or (self.role == ROLE_TENANT and self.tenant_id == tenant_id)


def normalize_username(value: Any) -> str:
    return validation.username(value)


def check_password(value: Any, *known_words: str) -> str:
    """``value`` when it is a strong enough password, else InvalidInput saying why. ``known_words`` (the
    username, the tenant) count as guessable."""
    if not isinstance(value, str) or not (MIN_PASSWORD_LENGTH <= len(value) <= MAX_PASSWORD_LENGTH):
        raise InvalidInput(f"password must be {MIN_PASSWORD_LENGTH}-{MAX_PASSWORD_LENGTH} characters")
    words = [w for w in known_words if w]
    if any(value.strip().casefold() == w.casefold() for w in words):
        raise InvalidInput("password must not be the username or the tenant")
    result = zxcvbn(value[:ZXCVBN_MAX_LENGTH], user_inputs=words)
    if result["score"] < MIN_PASSWORD_SCORE:
        feedback = result["feedback"]
        hints = " ".join(filter(None, [feedback.get("warning"), *feedback.get("suggestions", [])]))
        raise InvalidInput("password is too easy to guess" + (f": {hints}" if hints else "")
                           + " A few unrelated words make a strong one.")
    return value


def new_session_epoch() -> str:
    return secrets.token_urlsafe(16)


def one_time_password() -> str:
    """A random password (96 bits) for an invite or a reset, shown once; its holder must replace it."""
    return secrets.token_urlsafe(12)


def _user(row: dict[str, Any]) -> User:
    return User(row["username"], row["role"], row["tenant_id"] or "", row.get("session_epoch") or "",
                bool(row.get("disabled")), bool(row.get("must_change_password")))


def create_user(db: Database, username: Any, password: Any, role: Any, tenant_id: Any = "", *,
                replace: bool = False, one_time: bool = False) -> tuple[bool, User]:
    """Create a user (or, with ``replace``, overwrite one of that name). Returns (written, user); written is
    False when the user exists and ``replace`` is false. ``one_time``: the password is one of
    :func:`one_time_password`, to be replaced at the first login."""
    username = normalize_username(username)
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
    if not one_time:
        password = check_password(password, username, tenant_id)
    epoch = new_session_epoch()
    written = store.put_user(db, username, _hasher.hash(password), role, tenant_id, replace=replace,
                             session_epoch=epoch, must_change_password=one_time)
    return written, User(username, role, tenant_id, epoch, must_change_password=one_time)


def invite_user(db: Database, username: Any, tenant_id: str) -> tuple[User, str]:
    """A tenant admin of ``tenant_id`` with a one-time password; returns (user, password). The inviter hands
    the password over; the colleague must choose their own at the first login."""
    password = one_time_password()
    written, user = create_user(db, username, password, ROLE_TENANT, tenant_id, one_time=True)
    if not written:
        raise Conflict(f"user {user.username} already exists")
    return user, password


def get_user(db: Database, username: str) -> User | None:
    try:
        username = normalize_username(username)
    except InvalidInput:
        return None
    row = store.get_user(db, username)
    return _user(row) if row and row["role"] in ROLES else None


def list_users(db: Database) -> list[dict[str, Any]]:
    return [{"username": r["username"], "role": r["role"], "tenant": r["tenant_id"] or "",
             "created_at": r["created_at"], "disabled": bool(r["disabled"])} for r in store.list_users(db)]


def require_user(db: Database, username: Any) -> User:
    user = get_user(db, username)
    if user is None:
        raise NotFound(f"unknown user {username}")
    return user


def end_sessions(db: Database, username: str) -> None:
    """End every session of ``username`` (logout ends them all: one epoch per user)."""
    store.set_session_epoch(db, username, new_session_epoch())


def _set_password(db: Database, user: User, password: str, *, one_time: bool) -> User:
    epoch = new_session_epoch()
    if not store.set_password(db, user.username, _hasher.hash(password), epoch, one_time):
        raise NotFound(f"unknown user {user.username}")
    return dataclasses.replace(user, session_epoch=epoch, must_change_password=one_time)


def change_password(db: Database, username: Any, current: Any, new: Any) -> User:
    """A user's own change: the current password, then a strong new one (not the same). Ends every session
    of the user; returns the user with the new session epoch (for the session making the change)."""
    user = authenticate(db, username, current)
    if user is None:
        raise InvalidInput("the current password is wrong")
    if new == current:
        raise InvalidInput("the new password must differ from the current one")
    return _set_password(db, user, check_password(new, user.username, user.tenant_id), one_time=False)


def reset_password(db: Database, username: Any) -> tuple[User, str]:
    """A platform admin's reset: a one-time password (returned, to hand over) that must be replaced at the
    next login. Ends every session of the user."""
    password = one_time_password()
    return _set_password(db, require_user(db, username), password, one_time=True), password


def set_disabled(db: Database, username: Any, disabled: bool) -> User:
    """Disable (no login, sessions end) or enable a user."""
    user = require_user(db, username)
    if not store.set_user_disabled(db, user.username, disabled, new_session_epoch()):
        raise NotFound(f"unknown user {user.username}")
    return user


def delete_user(db: Database, username: Any) -> User:
    """Delete a user: their sessions end, since the per-request read finds no user."""
    user = require_user(db, username)
    store.delete_user(db, user.username)
    return user


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
    if row is None or row["role"] not in ROLES or row.get("disabled"):
        return None
    if _hasher.check_needs_rehash(stored):
        store.set_password_hash(db, row["username"], _hasher.hash(password))
    return _user(row)
