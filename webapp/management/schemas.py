"""Marshmallow schemas of the JSON bodies, from which apispec writes the OpenAPI document (/openapi.json).

They describe the contract; the views still validate with webapp.web.validation, whose messages are the ones
clients see. The schemathesis run in the test suite checks that every response matches these schemas.
"""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

from bandits.registry import DEFAULT_POLICY, POLICIES
from webapp.serving.tokens import MAX_TOKEN_LENGTH, TOKEN_RE
from webapp.web import validation

IDENTIFIER = validate.Regexp(validation.ID_RE.pattern)
# No C0/C1 control characters (the API also refuses format, surrogate, private-use and unassigned ones).
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f-\x9f]*$"
PLAIN_TEXT = validate.Regexp(NO_CONTROL_CHARACTERS)
HTTP_URL = [validate.Length(min=1, max=validation.MAX_URL_LENGTH), validate.Regexp(r"^https?://")]


class Closed(Schema):
    """A JSON object with exactly the fields listed (additionalProperties: false)."""

    class Meta:
        unknown = RAISE


class Error(Closed):
    error = fields.String(required=True, metadata={"description": "what was wrong, for a person to read"})


# -- serving ----------------------------------------------------------------------------------------------

class ServedBanner(Closed):
    id = fields.String(required=True)
    image_url = fields.String(required=True, metadata={"format": "uri"})
    alt = fields.String(required=True)


class ServedPosterior(Closed):
    scope = fields.String(required=True, validate=validate.OneOf(["location", "slot"]),
                          metadata={"description": "the location's posterior, or the slot-wide one"})
    alpha = fields.Float(metadata={"description": "α of the chosen banner's Beta posterior (1 + clicks for a "
                                                 "uniform prior); only for a caller with the platform token"})
    beta = fields.Float(metadata={"description": "β of the chosen banner's Beta posterior (1 + impressions − "
                                               "clicks); only for a caller with the platform token"})
    prior = fields.String(required=True, metadata={"description": "where the prior came from"})
    propensity = fields.Float(required=True, validate=validate.Range(0, 1),
                              metadata={"description": "probability that this draw picks the chosen banner"})


class ServeDocument(Closed):
    impression_id = fields.UUID(required=True)
    location = fields.String(required=True, metadata={"description": "normalized location, '' for none"})
    banner = fields.Nested(ServedBanner, required=True)
    click_url = fields.String(required=True, metadata={"format": "uri"})
    token = fields.String(required=True, metadata={"description": "signed click token"})
    posterior = fields.Nested(ServedPosterior, required=True)
    policy = fields.String(required=True, metadata={"description": "the slot's policy that chose the banner",
                                                    "example": "thompson"})


class ClickBody(Closed):
    token = fields.String(required=True, validate=[validate.Length(min=1, max=MAX_TOKEN_LENGTH),
                                                   validate.Regexp(TOKEN_RE.pattern)])
    # maxLength is MAX_PARAM_LENGTH, filled in from the config by webapp.web.openapi
    customer_id = fields.String(allow_none=True, validate=PLAIN_TEXT)
    referrer_id = fields.String(allow_none=True, validate=PLAIN_TEXT)


class ClickResult(Closed):
    status = fields.String(required=True, validate=validate.OneOf(["recorded", "duplicate"]))


class Ping(Closed):
    ok = fields.Boolean(required=True)


# -- management -------------------------------------------------------------------------------------------

class ClickFilterBody(Closed):
    """Per-tenant click filter thresholds; omitted fields keep their defaults. A rate of 0 disables it."""

    enabled = fields.Boolean()
    min_delay_seconds = fields.Float(validate=validate.Range(0, 3600))
    max_clicks_per_customer = fields.Integer(validate=validate.Range(0, 1_000_000))
    max_clicks_per_ip = fields.Integer(validate=validate.Range(0, 1_000_000))
    window_seconds = fields.Integer(validate=validate.Range(60, 7 * 86400))
    block_bot_user_agents = fields.Boolean()
    flag_ua_mismatch = fields.Boolean(metadata={"description": "flag a click whose user agent is not its "
                                                               "impression's (ua_mismatch); default false"})
    flag_ip_mismatch = fields.Boolean(metadata={"description": "flag a click whose address (IPv4, IPv6 /64) is "
                                                               "not its impression's (ip_mismatch); default false"})


class ClickFilter(Closed):
    enabled = fields.Boolean(required=True)
    min_delay_seconds = fields.Float(required=True)
    max_clicks_per_customer = fields.Integer(required=True)
    max_clicks_per_ip = fields.Integer(required=True)
    window_seconds = fields.Integer(required=True)
    block_bot_user_agents = fields.Boolean(required=True)
    flag_ua_mismatch = fields.Boolean(required=True)
    flag_ip_mismatch = fields.Boolean(required=True)


class TenantBody(Closed):
    name = fields.String(required=True, validate=[validate.Length(min=1, max=validation.MAX_TEXT_LENGTH),
                                                  PLAIN_TEXT])
    timezone = fields.String(allow_none=True, validate=validate.Length(min=1, max=64),
                             metadata={"description": "IANA time zone name; default Asia/Kolkata"})
    click_filter = fields.Nested(ClickFilterBody, allow_none=True)
    allowed_origins = fields.List(
        fields.String(validate=validate.Length(min=1, max=300)), allow_none=True, validate=validate.Length(max=50),
        metadata={"description": "origins of the tenant's own sites (https://shop.example): serves from other "
                                 "origins are refused (403) and their clicks not learned from; [] or null: any "
                                 "origin; kept when left out", "example": ["https://shop.example"]})


class Tenant(Closed):
    id = fields.String(required=True, validate=IDENTIFIER)
    name = fields.String(required=True)
    timezone = fields.String(required=True)
    click_filter = fields.Nested(ClickFilter, required=True)
    allowed_origins = fields.List(fields.String(), required=True,
                                  metadata={"description": "normalized; empty: any origin"})


class SlotBody(Closed):
    name = fields.String(required=True, validate=[validate.Length(min=1, max=validation.MAX_TEXT_LENGTH),
                                                  PLAIN_TEXT])
    size = fields.String(validate=validate.Regexp(r"^\d{1,4}x\d{1,4}$"),
                         metadata={"description": "WIDTHxHEIGHT in pixels; kept as stored when left out",
                                   "example": "728x250"})
    locations = fields.List(fields.String(validate=[validate.Length(max=128), PLAIN_TEXT]),
                            validate=validate.Length(max=200),
                            metadata={"description": "known locations (normalized); kept when left out"})
    decay_half_life_hours = fields.Float(
        allow_none=True, validate=validate.Range(0.25, 720),
        metadata={"description": "discounted Thompson sampling: learn from traffic weighted by "
                                 "2^(-age/half-life) instead of all traffic alike; null = no decay; kept when "
                                 "left out", "example": 24})
    policy = fields.String(allow_none=True, validate=validate.OneOf(sorted(POLICIES)),
                           metadata={"description": "the slot's policy (bandits/registry.py); null = "
                                                    f"{DEFAULT_POLICY}; kept when left out",
                                     "example": DEFAULT_POLICY})


class Slot(Closed):
    tenant = fields.String(required=True, validate=IDENTIFIER)
    id = fields.String(required=True, validate=IDENTIFIER)
    name = fields.String(required=True)
    size = fields.String(required=True, metadata={"example": "728x250"})
    width = fields.Integer(required=True)
    height = fields.Integer(required=True)
    locations = fields.List(fields.String(), required=True)
    decay_half_life_hours = fields.Float(required=True, allow_none=True)
    policy = fields.String(required=True, validate=validate.OneOf(sorted(POLICIES)))


class BannerBody(Closed):
    image_url = fields.String(required=True, validate=HTTP_URL, metadata={"format": "uri"})
    target_url = fields.String(required=True, validate=HTTP_URL, metadata={"format": "uri"})
    alt = fields.String(allow_none=True, validate=[validate.Length(max=validation.MAX_TEXT_LENGTH), PLAIN_TEXT])
    active = fields.Boolean(allow_none=True, metadata={"description": "default true; paused when false"})


class BannerEntry(Closed):
    id = fields.String(required=True, validate=IDENTIFIER)
    image_url = fields.String(required=True)
    target_url = fields.String(required=True)
    alt = fields.String(required=True)
    active = fields.Boolean(required=True)


class Banner(BannerEntry):
    tenant = fields.String(required=True, validate=IDENTIFIER)
    slot = fields.String(required=True, validate=IDENTIFIER)


class BannerList(Closed):
    banners = fields.List(fields.Nested(BannerEntry), required=True)


class PriorReport(Closed):
    alpha = fields.Float(required=True)
    beta = fields.Float(required=True)
    source = fields.String(required=True)


class BannerReport(Closed):
    id = fields.String(required=True)
    active = fields.Boolean(required=True)
    impressions = fields.Integer(required=True, validate=validate.Range(min=0))
    clicks = fields.Integer(required=True, validate=validate.Range(min=0),
                            metadata={"description": "valid clicks, the ones learned from"})
    filtered_clicks = fields.Integer(required=True, validate=validate.Range(min=0),
                                     metadata={"description": "stored but flagged (bots, too fast, too many)"})
    ctr = fields.Float(required=True)
    weighted_impressions = fields.Float(required=True, validate=validate.Range(min=0), metadata={
        "description": "impressions the posterior learned from: time-decayed when the slot has a half-life"})
    weighted_clicks = fields.Float(required=True, validate=validate.Range(min=0))
    alpha = fields.Float(required=True)
    beta = fields.Float(required=True)
    posterior_mean = fields.Float(required=True)
    prior = fields.Nested(PriorReport, required=True)
    p_best = fields.Float(required=True, validate=validate.Range(0, 1),
                          metadata={"description": "posterior probability of the highest CTR among active "
                                                   "banners"})


class SlotStats(Closed):
    tenant = fields.String(required=True)
    slot = fields.String(required=True)
    location = fields.String(required=True)
    decay_half_life_hours = fields.Float(required=True, allow_none=True)
    banners = fields.List(fields.Nested(BannerReport), required=True)
    locations = fields.List(fields.String(), required=True)
    filtered_clicks_by_reason = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)


SCHEMAS: tuple[type[Schema], ...] = (Error, ServeDocument, ClickBody, ClickResult, Ping, TenantBody, Tenant,
                                     SlotBody, Slot, BannerBody, Banner, BannerList, SlotStats)
