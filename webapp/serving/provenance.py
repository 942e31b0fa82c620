"""Where a serve or a click came from: the web origin that sent it, and a keyed hash of its client.

A tenant names its own sites' origins (``allowed_origins``). A browser names the page's origin in the
``Origin`` header of every cross-origin fetch and POST; a link followed to GET /v1/click/<token> carries no
Origin but a ``Referer`` (at least the page's origin under the default Referrer-Policy). A request naming
neither (a publisher's backend, curl, a browser that hides its referrer) is judged by the other rules.

The click filter's ip_mismatch and ua_mismatch rules compare a click's client with its impression's. The
serve puts a keyed hash of each (HMAC-SHA256 under the click token secret, 64 bits) into the signed click
token and the impression row, so a click is judged without a read and no serve's raw address is stored.

Pure: no Flask, no Cassandra.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

MAX_ORIGINS = 50
MAX_ORIGIN_LENGTH = 300
NULL_ORIGIN = "null"          # what a sandboxed frame, a file: page or a privacy redirect sends as Origin


class InvalidOrigin(ValueError):
    """Not a web origin such as https://shop.example."""


def normalize_origin(value: object) -> str:
    """``"HTTPS://Shop.Example:443/"`` → ``"https://shop.example"``: scheme://host[:port] as a browser's Origin
    header spells it (lower case, default port left out, international names in punycode). Raises
    :class:`InvalidOrigin` for anything else (a path, a query, credentials, a wildcard, another scheme)."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ORIGIN_LENGTH:
        raise InvalidOrigin(f"an origin must be a string of 1-{MAX_ORIGIN_LENGTH} characters")
    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise InvalidOrigin(f"{text!r} is not an origin such as https://shop.example") from None
    host = parts.hostname
    if parts.scheme.lower() not in ("http", "https") or not host or "*" in text:
        raise InvalidOrigin(f"{text!r} is not an origin such as https://shop.example (http or https, a host "
                            "name, no wildcard)")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise InvalidOrigin(f"{text!r} is not an origin: only scheme://host[:port], no path, query or user")
    scheme = parts.scheme.lower()
    host = _host(host, text)
    default_port = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default_port else "")


def _host(host: str, text: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        return f"[{address.compressed}]" if address.version == 6 else address.compressed
    try:
        host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise InvalidOrigin(f"{text!r} has an invalid host name") from None
    if not all(label and len(label) <= 63 and label.replace("-", "").isalnum() for label in host.split(".")):
        raise InvalidOrigin(f"{text!r} has an invalid host name")
    return host


def normalize_origins(values: object) -> list[str]:
    """A tenant's allowed origins: a list of origins (or one comma/whitespace-separated string), normalized,
    sorted, without duplicates; at most MAX_ORIGINS. Raises :class:`InvalidOrigin`."""
    if values is None:
        return []
    if isinstance(values, str):
        values = values.replace(",", " ").split()
    if not isinstance(values, list):
        raise InvalidOrigin("allowed_origins must be a list of origins such as [\"https://shop.example\"]")
    origins = sorted({normalize_origin(v) for v in values})
    if len(origins) > MAX_ORIGINS:
        raise InvalidOrigin(f"at most {MAX_ORIGINS} allowed origins per tenant")
    return origins


def origin_of(url: str) -> str | None:
    """The normalized origin of an absolute http(s) URL, or None."""
    try:
        parts = urlsplit(url)
        return normalize_origin(f"{parts.scheme}://{parts.netloc}")
    except (InvalidOrigin, ValueError):
        return None


def request_origin(headers: Mapping[str, str], *, navigation: bool = False) -> str | None:
    """The origin that sent a request: its ``Origin`` header; for a navigation (the click redirect, the embed
    frame), else the origin of its ``Referer``. None when it names neither (judged by the other rules); an
    origin that cannot be parsed is returned as "null" (a foreign origin)."""
    origin = headers.get("Origin")
    if origin is None and navigation:
        referer = headers.get("Referer")
        if not referer:
            return None
        origin = referer
    if origin is None:
        return None
    if origin.strip() == NULL_ORIGIN:
        return NULL_ORIGIN
    try:
        parts = urlsplit(origin.strip())
        return normalize_origin(f"{parts.scheme}://{parts.netloc}")
    except (InvalidOrigin, ValueError):
        return NULL_ORIGIN


def is_allowed(origin: str | None, allowed: Iterable[str], own: Iterable[str] = ()) -> bool:
    """Whether a request from ``origin`` may be served and learned from: always when the tenant allows every
    origin (``allowed`` empty) or the request names none; else when it is one of ``allowed`` or ``own`` (this
    service's own pages: the embed frame, the demo page)."""
    allowed = frozenset(allowed)
    return not allowed or origin is None or origin in allowed or origin in frozenset(own)


# -- the client of an impression ---------------------------------------------------------------------

def client_network(ip: str) -> str:
    """The address compared by the ip_mismatch rule: an IPv4 address, or an IPv6 address's /64 (a host's
    privacy addresses rotate inside its /64)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6:
        mapped = address.ipv4_mapped
        if mapped is not None:
            return mapped.compressed
        return ipaddress.ip_network(f"{address}/64", strict=False).compressed
    return address.compressed


class ClientHasher:
    """Keyed hashes of a client's network and user agent (16 hex digits each): equal for equal inputs under
    one key, and telling nothing about the address or agent to whoever reads a token or a row."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"banner-bandit.client-hash.v1\0" + secret.encode()).digest()

    def _hash(self, kind: bytes, value: str) -> str:
        return hmac.new(self._key, kind + b"\0" + value.encode("utf-8", "replace"), hashlib.sha256).hexdigest()[:16]

    def ip(self, ip: str) -> str:
        return self._hash(b"ip", client_network(ip))

    def user_agent(self, user_agent: str) -> str:
        return self._hash(b"ua", user_agent)
