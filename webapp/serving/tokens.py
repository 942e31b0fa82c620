"""Signed click tokens: HMAC (itsdangerous) over the impression they name, valid for a window."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner

from eventlog.timeuuids import uuid_seconds
from webapp.web.errors import InvalidToken

MAX_TOKEN_LENGTH = 2048
SALT = "banner-bandit.click.v1"
TOKEN_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")     # what URLSafeTimedSerializer writes: base64url and '.'


@dataclass(frozen=True)
class ClickClaim:
    """What a click token proves: this impression of this banner was served here, then."""

    impression_id: uuid.UUID
    tenant_id: str
    slot_id: str
    banner_id: str
    location: str
    day: dt.date | None = None      # only in tokens signed before the bounded event log (cql/006): the
    #                                 impression's UTC day, the partition of the old click table
    cell: str | None = None         # the impression's context cell (contextual slots, cql/012): its click
    #                                 counts there too (eventlog.counting rule 6)
    ip_hash: str = ""               # keyed hashes of the serve's client network and user agent
    ua_hash: str = ""               # (webapp.serving.provenance); '' in tokens signed without them
    serving_group: str | None = None  # the impression's holdout group and visitor shard, for its click's count
    lift_shard: int | None = None     # in lift_counts (cql/014); None in tokens signed before them

    @property
    def served_epoch(self) -> float:
        """When the impression was served: the timestamp inside its time-based UUID (seconds)."""
        return uuid_seconds(self.impression_id)


class ClickTokens:
    def __init__(self, secret: str, window_seconds: int) -> None:
        if not secret:
            raise ValueError("a click token secret is required")
        if window_seconds <= 0:
            raise ValueError("CLICK_WINDOW_SECONDS must be > 0")
        # HMAC-SHA1 over base64url(JSON payload) and a timestamp; no compression (it costs more than it
        # saves on a payload this small). itsdangerous derives the HMAC key from secret and salt on every
        # sign and unsign; derive it once and sign with it as is: the same tokens, a hash less per serve.
        key = TimestampSigner(secret, salt=SALT).derive_key()
        self._signer = TimestampSigner(key, salt=SALT, key_derivation="none")
        self.window_seconds = window_seconds

    def sign(self, claim: ClickClaim) -> str:
        fields = [claim.impression_id.hex, claim.tenant_id, claim.slot_id, claim.banner_id, claim.location]
        if claim.cell is None and not claim.ip_hash and not claim.ua_hash and claim.serving_group is None:
            if claim.day is not None:       # the format of before 006 (tests of old tokens sign it)
                fields.append(claim.day.toordinal())
        else:       # nine fields: day (null), a contextual impression's cell (cql/012), client hashes (cql/008)
            fields += [claim.day.toordinal() if claim.day is not None else None, claim.cell, claim.ip_hash,
                       claim.ua_hash]
            if claim.serving_group is not None:     # eleven: the group and visitor shard (cql/014)
                fields += [claim.serving_group, claim.lift_shard]
        payload = json.dumps(fields, separators=(",", ":")).encode()
        return self._signer.sign(base64.urlsafe_b64encode(payload).rstrip(b"=")).decode()

    def verify(self, token: object) -> ClickClaim:
        """Return the claim, or raise InvalidToken (forged, malformed or expired)."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("token is missing or malformed")
        if not TOKEN_RE.fullmatch(token):
            raise InvalidToken("token is malformed (characters other than letters, digits, '_', '-', '.')")
        try:
            signed = self._signer.unsign(token, max_age=self.window_seconds)
        except SignatureExpired:
            raise InvalidToken("token has expired: clicks are accepted for "
                               f"{self.window_seconds} seconds after the impression") from None
        except BadSignature:
            raise InvalidToken("token is invalid (bad signature or malformed)") from None
        try:
            payload = json.loads(base64.urlsafe_b64decode(signed + b"=" * (-len(signed) % 4)))
            if not isinstance(payload, list) or len(payload) not in (5, 6, 9, 11):
                raise ValueError("payload")
            impression_hex, tenant_id, slot_id, banner_id, location = payload[:5]
            # Six fields: signed before 006, with the impression's day (still valid for its window); nine: the
            # day (null), a contextual impression's cell (or null) and the serve's client hashes.
            day = dt.date.fromordinal(payload[5]) if len(payload) >= 6 and payload[5] is not None else None
            cell, ip_hash, ua_hash = payload[6:9] if len(payload) >= 9 else (None, "", "")
            group, shard = payload[9:11] if len(payload) == 11 else (None, None)
            if group is not None and (not isinstance(group, str) or type(shard) is not int):
                raise ValueError("group")
            if cell is not None and not isinstance(cell, str):
                raise ValueError("cell")
            if not isinstance(ip_hash, str) or not isinstance(ua_hash, str):
                raise ValueError("payload")
            return ClickClaim(uuid.UUID(hex=impression_hex), tenant_id, slot_id, banner_id, location, day, cell,
                              ip_hash, ua_hash, group, shard if group is not None else None)
        except (TypeError, ValueError):
            # Signed by us but not in this format: only a key shared with something else could do that.
            raise InvalidToken("token is invalid (unexpected payload)") from None
