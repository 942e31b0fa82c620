"""Input validation shared by the public and management APIs. Every failure raises InvalidInput."""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import available_timezones

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property

from webapp.web.errors import InvalidInput

# One rule for every identifier a person types (tenant, slot and banner IDs; dashboard usernames, which may
# also hold '@'): 1-64 characters of letters, digits, '_', '-' and single dots, starting with a letter or digit
# (so never '..', never a trailing dot). New identifiers are lower-case (NEW_ID_RE); lookups match exactly
# what is stored (ID_RE), so a mixed-case ID created before this rule (say 'probeA') keeps working as written,
# while a new ID that differs from an existing one only by case is refused where it is created.
MAX_ID_LENGTH = 64
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]+)*$")
NEW_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*(?:\.[a-z0-9_\-]+)*$")
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-@]*(?:\.[a-z0-9_\-@]+)*$")
ID_RULE = ("1-64 characters of letters, digits, '_', '-' or single dots, starting with a letter or digit and "
           "not ending with a dot")
MAX_URL_LENGTH = 2048
MAX_TEXT_LENGTH = 300


class Utf8Request(Request):
    """A request whose query parameters are UTF-8 or refused.

    Werkzeug keeps bytes that are not UTF-8 percent-encoded ("?location=%C3%28" reads "%C3("), so a
    malformed city or customer ID would be logged as if it were real; here it is a 400 instead.
    """

    @cached_property
    def args(self):
        try:
            pairs = parse_qsl(self.query_string.decode(), keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:
            raise InvalidInput(
                "the query string is not UTF-8 (its percent-encoded bytes must spell UTF-8)") from None
        return self.parameter_storage_class(pairs)

    def get_data(self, cache: bool = True, as_text: bool = False, parse_form_data: bool = False):  # type: ignore[override]
        """The body; 413 when a body without Content-Length (chunked) is larger than MAX_CONTENT_LENGTH.

        Werkzeug reads such a body up to the limit and stops there, so a larger one arrived cut short and
        was answered 400 as malformed JSON; a body that reached the limit and still has bytes is too large.
        """
        data = super().get_data(cache=True, parse_form_data=parse_form_data)
        limit = self.max_content_length
        if limit is not None and self.content_length is None and len(data) >= limit \
                and self.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge()
        return super().get_data(cache=cache, as_text=as_text, parse_form_data=parse_form_data)


def identifier(value: str, what: str) -> str:
    """A tenant, slot or banner ID to look up: the shape of :data:`ID_RE`, any case (see ID_RULE)."""
    if not isinstance(value, str) or len(value) > MAX_ID_LENGTH or not ID_RE.fullmatch(value):
        raise InvalidInput(f"{what} must be {ID_RULE}")        # fullmatch: '$' alone lets "id\n" in
    return value


def new_identifier(value: str, what: str) -> str:
    """A tenant, slot or banner ID being created: :func:`identifier`'s rule, in lower case."""
    identifier(value, what)
    if not NEW_ID_RE.fullmatch(value):
        raise InvalidInput(f"{what} must be lower-case: {ID_RULE} (try {value.lower()!r})")
    return value


def username(value: Any) -> str:
    """A dashboard username, case-folded: the identifier rule, '@' allowed too (an e-mail address)."""
    if not isinstance(value, str):
        raise InvalidInput("username must be a string")
    folded = value.strip().casefold()
    if len(folded) > MAX_ID_LENGTH or not USERNAME_RE.fullmatch(folded):
        raise InvalidInput(f"username must be {ID_RULE} ('@' allowed too)")
    return folded


def _has_control_characters(value: str) -> bool:
    return any(unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn"} for ch in value)


def text_param(value: str | None, what: str, max_length: int) -> str:
    """An optional free-text parameter (customer_id, referrer_id): bounded, no control characters."""
    if value is None:
        return ""
    if len(value) > max_length:
        raise InvalidInput(f"{what} is too long ({len(value)} characters, at most {max_length})")
    if _has_control_characters(value):
        raise InvalidInput(f"{what} contains control or unassigned characters")
    return value.strip()


def normalize_location(value: str | None, max_length: int) -> str:
    """Trim, collapse inner whitespace and case-fold a city name; '' means no location."""
    raw = text_param(value, "location", max_length)
    return " ".join(raw.split()).casefold()


def http_url(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{what} must be a non-empty string")
    if len(value) > MAX_URL_LENGTH:
        raise InvalidInput(f"{what} is too long (at most {MAX_URL_LENGTH} characters)")
    if _has_control_characters(value) or any(ch.isspace() for ch in value):
        raise InvalidInput(f"{what} must not contain whitespace or control characters")
    try:
        parts = urlsplit(value)
        parts.port                         # noqa: B018 - parsing the port raises on a bad one
    except ValueError:                     # e.g. "http://[::1" or "http://host:99999"
        raise InvalidInput(f"{what} is not a valid URL") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InvalidInput(f"{what} must be an absolute http(s) URL")
    return value


def short_text(value: Any, what: str, *, required: bool, max_length: int = MAX_TEXT_LENGTH) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise InvalidInput(f"{what} must be a non-empty string" if required else f"{what} must be a string")
    if len(value) > max_length:
        raise InvalidInput(f"{what} is too long (at most {max_length} characters)")
    if _has_control_characters(value):
        raise InvalidInput(f"{what} contains control characters")
    return value.strip()


@functools.cache
def _known_timezones() -> frozenset[str]:
    # "localtime" is a file of the host's zoneinfo directory: the host's own zone, not a name to store.
    return frozenset(available_timezones() - {"localtime"})


def timezone(value: Any, default: str) -> str:
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidInput("timezone must be an IANA time zone name such as 'Asia/Kolkata'")
    # Looked up in the list rather than loaded: ZoneInfo("Asia") raises IsADirectoryError.
    if value not in _known_timezones():
        raise InvalidInput(f"timezone {value!r} is not a known IANA time zone")
    return value


def boolean(value: Any, what: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidInput(f"{what} must be true or false")
    return value


def json_object(body: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    return body


def json_body(request: Any, allowed: set[str]) -> dict[str, Any]:
    """The request's JSON object body with only ``allowed`` fields (a Flask/Werkzeug request)."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:                 # "[[[[…" nested thousands deep fits in a small body
        raise InvalidInput("request body is nested too deeply") from None
    return json_object(body, allowed)
