"""Marshmallow schemas of the JSON bodies, from which apispec writes the OpenAPI document (/openapi.json).

They describe the contract; the views still validate with webapp.web.validation, whose messages are the ones
clients see. The schemathesis run in the test suite checks that every response matches these schemas.
"""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

from bandits.contextual import DEFAULT_FEATURES as DEFAULT_CONTEXT
from bandits.contextual import FEATURES as CONTEXT_FEATURES
from bandits.registry import DEFAULT_POLICY, POLICIES
from webapp.serving.tokens import MAX_TOKEN_LENGTH, TOKEN_RE
from webapp.web import validation

IDENTIFIER = [validate.Length(min=1, max=validation.MAX_ID_LENGTH), validate.Regexp(validation.ID_RE.pattern)]
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
    scope = fields.String(required=True, validate=validate.OneOf(["location", "slot", "holdout"]),
                          metadata={"description": "the location's posterior, the slot-wide one, or 'holdout' "
                                                   "(a uniform draw, no posterior)"})
    alpha = fields.Float(allow_none=True, metadata={
        "description": "α of the chosen banner's Beta posterior (1 + clicks for a uniform prior); only for a "
                       "caller with the platform token or the tenant's key (scope read); null in the holdout"})
    beta = fields.Float(allow_none=True, metadata={
        "description": "β of the chosen banner's Beta posterior (1 + impressions − clicks); only for a caller "
                       "with the platform token or the tenant's key (scope read); null in the holdout"})
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
    group = fields.String(required=True, validate=validate.OneOf(["policy", "holdout"]),
                          metadata={"description": "'holdout': served uniformly at random (the slot's "
                                                   "holdout_percent), not by the policy"})
    features = fields.List(fields.String(), metadata={
        "description": "contextual slots: the context levels (feature=level) that raised the chosen banner's "
                       "score most against the others", "example": ["referrer=newsletter", "device=mobile"]})


class ClickBody(Closed):
    token = fields.String(required=True, validate=[validate.Length(min=1, max=MAX_TOKEN_LENGTH),
                                                   validate.Regexp(TOKEN_RE.pattern)])
    # maxLength is MAX_PARAM_LENGTH, filled in from the config by webapp.web.openapi
    customer_id = fields.String(allow_none=True, validate=PLAIN_TEXT)
    referrer_id = fields.String(allow_none=True, validate=PLAIN_TEXT)
    visitor_ip = fields.String(allow_none=True, metadata={
        "description": "the visitor's IPv4 or IPv6 address, judged by the click filter; only with a tenant "
                       "API key (scope events), else 400", "example": "203.0.113.7"})
    user_agent = fields.String(allow_none=True, validate=[validate.Length(max=512), PLAIN_TEXT], metadata={
        "description": "the visitor's User-Agent, judged by the click filter; only with a tenant API key"})


class ClickResult(Closed):
    status = fields.String(required=True, validate=validate.OneOf(["recorded", "duplicate"]))
    counted = fields.Boolean(metadata={"description": "with an API key: whether the click counts for learning"})
    reason = fields.String(allow_none=True, metadata={
        "description": "with an API key: why it does not count (too_fast, bot_user_agent, customer_rate, "
                       "ip_rate, duplicate), null when it does"})


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
                         metadata={"description": "WIDTHxHEIGHT in pixels; default 728x250",
                                   "example": "728x250"})
    locations = fields.List(fields.String(validate=[validate.Length(max=128), PLAIN_TEXT]),
                            validate=validate.Length(max=200),
                            metadata={"description": "known locations (normalized); default []"})
    decay_half_life_hours = fields.Float(
        allow_none=True, validate=validate.Range(0.25, 720),
        metadata={"description": "discounted Thompson sampling: learn from traffic weighted by "
                                 "2^(-age/half-life) instead of all traffic alike; null = no decay (the "
                                 "default)", "example": 24})
    policy = fields.String(allow_none=True, validate=validate.OneOf(sorted(POLICIES)),
                           metadata={"description": "the slot's policy (bandits/registry.py); null = "
                                                    f"{DEFAULT_POLICY} (the default)",
                                     "example": DEFAULT_POLICY})
    holdout_percent = fields.Integer(
        allow_none=True, validate=validate.Range(0, 50),
        metadata={"description": "share of visitors (sticky per customer_id) served uniformly at random, to "
                                 "measure the policy's lift (GET .../lift); null = 0; kept when left out",
                  "example": 10})
    context = fields.List(fields.String(validate=validate.OneOf(CONTEXT_FEATURES)), allow_none=True,
                          validate=validate.Length(max=len(CONTEXT_FEATURES)), metadata={
                              "description": "the context features a contextual slot learns from; empty or null "
                                             f"= {', '.join(DEFAULT_CONTEXT)}; kept when left out",
                              "example": ["referrer", "device", "hour"]})


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
    holdout_percent = fields.Integer(required=True, validate=validate.Range(0, 50))

    context = fields.List(fields.String(validate=validate.OneOf(CONTEXT_FEATURES)), required=True,
                          metadata={"description": "the context features of a contextual slot"})


SCHEDULE_TIME = {"format": "date-time", "example": "2026-12-24T00:00:00+05:30"}


class BannerBody(Closed):
    image_url = fields.String(required=True, validate=HTTP_URL, metadata={"format": "uri"})
    target_url = fields.String(required=True, validate=HTTP_URL, metadata={"format": "uri"})
    alt = fields.String(allow_none=True, validate=[validate.Length(max=validation.MAX_TEXT_LENGTH), PLAIN_TEXT],
                        metadata={"description": "default \"\""})
    active = fields.Boolean(allow_none=True, metadata={"description": "default true; paused when false"})
    starts_at = fields.String(allow_none=True, metadata={
        **SCHEDULE_TIME, "description": "served from then on (ISO 8601 with an offset); default null: already"})
    ends_at = fields.String(allow_none=True, metadata={
        **SCHEDULE_TIME, "description": "served until then (exclusive; after starts_at); default null: no end"})


class BannerEntry(Closed):
    id = fields.String(required=True, validate=IDENTIFIER)
    image_url = fields.String(required=True)
    target_url = fields.String(required=True)
    alt = fields.String(required=True)
    active = fields.Boolean(required=True)
    starts_at = fields.String(required=True, allow_none=True, metadata={"format": "date-time"})
    ends_at = fields.String(required=True, allow_none=True, metadata={"format": "date-time"})
    schedule = fields.String(required=True, validate=validate.OneOf(["scheduled", "live", "ended"]),
                             metadata={"description": "before starts_at, inside the interval, from ends_at on"})


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
    schedule = fields.String(required=True, validate=validate.OneOf(["scheduled", "live", "ended"]))
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


class ReferrerBanner(Closed):
    id = fields.String(required=True)
    impressions = fields.Integer(required=True, validate=validate.Range(min=0))
    clicks = fields.Integer(required=True, validate=validate.Range(min=0))
    ctr = fields.Float(required=True, allow_none=True)


class ReferrerRow(Closed):
    referrer = fields.String(required=True, allow_none=True, metadata={
        "description": "the referrer_id; '' for events without one; null for the row summing the referrers "
                       "past the top 25"})
    referrers = fields.Integer(validate=validate.Range(min=1),
                               metadata={"description": "only on the summing row: how many referrers it sums"})
    impressions = fields.Integer(required=True, validate=validate.Range(min=0))
    clicks = fields.Integer(required=True, validate=validate.Range(min=0))
    ctr = fields.Float(required=True, allow_none=True)
    banners = fields.List(fields.Nested(ReferrerBanner), required=True)


class Visitors(Closed):
    unique = fields.Integer(required=True, validate=validate.Range(min=0), metadata={
        "description": "distinct customer_id values of the impressions (HyperLogLog estimate)"})
    clicks_per_visitor = fields.Float(required=True, allow_none=True)
    relative_error = fields.Float(required=True, metadata={"description": "the estimate's standard error"})


class Audience(Closed):
    days = fields.Integer(required=True)
    since = fields.String(required=True, metadata={"format": "date", "description": "first UTC day counted"})
    referrers = fields.List(fields.Nested(ReferrerRow), required=True,
                            metadata={"description": "by impressions, most first"})
    referrer_count = fields.Integer(required=True, validate=validate.Range(min=0))
    visitors = fields.Nested(Visitors, required=True)


class SlotStats(Closed):
    tenant = fields.String(required=True)
    slot = fields.String(required=True)
    location = fields.String(required=True)
    decay_half_life_hours = fields.Float(required=True, allow_none=True)
    policy = fields.String(required=True, validate=validate.OneOf(sorted(POLICIES)),
                           metadata={"description": "the policy that serves the slot"})
    context = fields.Dict(required=True, allow_none=True, metadata={
        "description": "contextual slots: `features`, the fitted `levels` (feature=level), and `by_banner`: "
                       "banner → level → {ctr, low, high} (95% interval), the other features at `other`"})
    banners = fields.List(fields.Nested(BannerReport), required=True)
    locations = fields.List(fields.String(), required=True)
    filtered_clicks_by_reason = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    audience = fields.Nested(Audience, required=True)


def patch_of(body: type[Schema], name: str) -> type[Schema]:
    """The merge-patch body of a resource: its PUT body's fields, none required, each nullable (null = back
    to the default)."""
    members = {}
    for field_name, field in body._declared_fields.items():
        copy = field.__class__.__new__(field.__class__)
        copy.__dict__.update(field.__dict__)
        copy.required, copy.allow_none = False, True
        members[field_name] = copy
    return type(name, (Closed,), members)


TenantPatch = patch_of(TenantBody, "TenantPatch")
SlotPatch = patch_of(SlotBody, "SlotPatch")
BannerPatch = patch_of(BannerBody, "BannerPatch")


class TenantList(Closed):
    tenants = fields.List(fields.Nested(Tenant), required=True)


class SlotList(Closed):
    slots = fields.List(fields.Nested(Slot), required=True)


SCOPE = fields.String(validate=validate.OneOf(["read", "write", "events"]))


class ApiKeyBody(Closed):
    name = fields.String(required=True, validate=[validate.Length(min=1, max=100), PLAIN_TEXT])
    scopes = fields.List(SCOPE, required=True, validate=validate.Length(min=1), metadata={
        "description": "read: GETs (lists, stats); write: configuration changes; events: server-side clicks"})


class ApiKey(Closed):
    id = fields.String(required=True)
    name = fields.String(required=True)
    scopes = fields.List(SCOPE, required=True)
    created_at = fields.String(required=True, metadata={"format": "date-time"})
    last_used_at = fields.String(required=True, allow_none=True, metadata={"format": "date-time"})


class NewApiKey(Closed):
    id = fields.String(required=True)
    name = fields.String(required=True)
    scopes = fields.List(SCOPE, required=True)
    created_at = fields.String(required=True, metadata={"format": "date-time"})
    key = fields.String(required=True, metadata={"description": "the key, shown this once: send it as "
                                                                "'Authorization: Bearer <key>'"})


class ApiKeyList(Closed):
    api_keys = fields.List(fields.Nested(ApiKey), required=True)


class GroupTraffic(Closed):
    units = fields.Integer(required=True, metadata={"description": "the group's impressions, the units the lift "
                                                                   "counters see (a visitor's impressions are "
                                                                   "clustered by visitor shard for the intervals)"})
    impressions = fields.Integer(required=True)
    clicks = fields.Integer(required=True, metadata={"description": "valid clicks"})
    ctr = fields.Float(required=True, allow_none=True)


class Interval(Closed):
    estimate = fields.Float(required=True, allow_none=True)
    low = fields.Float(required=True, allow_none=True, metadata={"description": "95% interval"})
    high = fields.Float(required=True, allow_none=True)


class GroupCounts(Closed):
    policy = fields.Float(required=True)
    holdout = fields.Float(required=True)


class SampleRatio(Closed):
    observed = fields.Nested(GroupCounts, required=True, metadata={"description": "impressions per group"})
    expected = fields.Nested(GroupCounts, required=True,
                             metadata={"description": "from the holdout share logged with each impression"})
    chi_square = fields.Float(required=True, allow_none=True)
    p_value = fields.Float(required=True, allow_none=True)
    mismatch = fields.Boolean(required=True, metadata={"description": "p < 0.001: do not trust the lift"})


class Groups(Closed):
    policy = fields.Nested(GroupTraffic, required=True)
    holdout = fields.Nested(GroupTraffic, required=True)


class DailyLift(Closed):
    day = fields.Date(required=True, metadata={"description": "in the tenant's time zone"})
    lift = fields.Nested(Interval, required=True)
    extra_clicks = fields.Float(required=True, allow_none=True)
    impressions = fields.Nested(GroupCounts, required=True)


class SlotLift(Closed):
    tenant = fields.String(required=True)
    slot = fields.String(required=True)
    location = fields.String(required=True)
    since = fields.DateTime(required=True)
    until = fields.DateTime(required=True)
    timezone = fields.String(required=True)
    holdout_percent = fields.Integer(required=True)
    groups = fields.Nested(Groups, required=True)
    lift = fields.Nested(Interval, required=True, metadata={
        "description": "relative lift of the policy group's CTR over the holdout's (0.2 = +20%)"})
    extra_clicks = fields.Nested(Interval, required=True, metadata={
        "description": "clicks the policy group earned beyond the holdout's CTR"})
    sample_ratio = fields.Nested(SampleRatio, required=True)
    daily = fields.List(fields.Nested(DailyLift), required=True)
    method = fields.String(required=True)


class Estimates(Closed):
    ips = fields.Nested(Interval, required=True)
    snips = fields.Nested(Interval, required=True)
    dr = fields.Nested(Interval, required=True)


class CandidateEvaluation(Closed):
    candidate = fields.String(required=True, metadata={"example": "thompson:half-life=24"})
    effective_sample_size = fields.Float(required=True)
    events = fields.Integer(required=True, metadata={"description": "impressions with a propensity, evaluated"})
    left_out = fields.Integer(required=True, metadata={"description": "impressions without a propensity"})
    zero_support = fields.Float(required=True, metadata={
        "description": "share of the candidate's probability on banners never logged in that context"})
    observed_ctr = fields.Float(required=True)
    flags = fields.List(fields.String(validate=validate.OneOf(["zero_support", "small_ess"])), required=True)
    estimates = fields.Nested(Estimates, required=True, metadata={"description": "IPS, self-normalized IPS and "
                                                                                 "doubly robust, 95% bootstrap"})


class SlotEvaluation(Closed):
    tenant = fields.String(required=True)
    slot = fields.String(required=True)
    run_at = fields.DateTime(required=True, allow_none=True, metadata={"description": "null: never evaluated"})
    since = fields.DateTime(required=True, allow_none=True)
    until = fields.DateTime(required=True, allow_none=True)
    candidates = fields.List(fields.Nested(CandidateEvaluation), required=True)


SCHEMAS: tuple[type[Schema], ...] = (Error, ServeDocument, ClickBody, ClickResult, Ping, TenantBody, Tenant,
                                     SlotBody, Slot, BannerBody, Banner, BannerList, SlotStats, TenantPatch,
                                     SlotPatch, BannerPatch, TenantList, SlotList, ApiKeyBody, ApiKey, NewApiKey,
                                     ApiKeyList, SlotLift, SlotEvaluation)
