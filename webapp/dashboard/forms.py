"""Dashboard forms (Flask-WTF, each with its CSRF token). Fields check presence and length only: the rules
of what is valid live in the service layer, whose DomainError messages the views show as form errors."""

from __future__ import annotations

import datetime as dt
from functools import cache
from zoneinfo import available_timezones

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    HiddenField,
    PasswordField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, EqualTo, Length, Optional, ValidationError

from bandits.contextual import DEFAULT_FEATURES, FEATURES
from webapp.dashboard import accounts


@cache
def timezone_choices() -> list[str]:
    return sorted(tz for tz in available_timezones() if "/" in tz or tz == "UTC")


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=accounts.MAX_PASSWORD_LENGTH)])


class EmptyForm(FlaskForm):
    """Only the CSRF token: logout and other one-button actions."""


class TenantForm(FlaskForm):
    tenant_id = StringField("Tenant ID", validators=[DataRequired(), Length(max=64)],
                            description="Letters, digits, '_', '-', '.'; used in URLs and the embed code.")
    name = StringField("Name", validators=[DataRequired(), Length(max=300)])
    timezone = SelectField("Time zone", default="Asia/Kolkata",
                           description="Charts and hours of the results page use it.")
    allowed_origins = TextAreaField(
        "Allowed origins", validators=[Optional(), Length(max=16_000)],
        description="Your own sites, one per line, such as https://shop.example. Serves from other sites are "
                    "refused and their clicks not learned from. Empty: any site can show your banners and "
                    "send you clicks.")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.timezone.choices = timezone_choices()


class SlotForm(FlaskForm):
    slot_id = StringField("Slot ID", validators=[DataRequired(), Length(max=64)])
    name = StringField("Name", validators=[DataRequired(), Length(max=300)])
    size = StringField("Size (pixels)", default="728x250", validators=[DataRequired(), Length(max=20)],
                       description="WIDTHxHEIGHT, such as 728x250.")
    locations = TextAreaField("Known locations", validators=[Optional(), Length(max=20_000)],
                              description="One per line or comma-separated, e.g. Mumbai, Delhi. Results can be "
                                          "filtered by these and by any location that traffic brings.")
    decay_half_life_hours = StringField(
        "Decay half-life (hours)", validators=[Optional(), Length(max=20)],
        description="Empty: learn from all traffic alike. When the best banner changes over time, set how fast "
                    "old evidence fades: it counts half after this many hours (0.25 to 720).")
    holdout_percent = StringField(
        "Holdout (% of visitors)", validators=[Optional(), Length(max=10)],
        description="Empty or 0: none. This share of visitors (the same visitor always, by customer ID) is served "
                    "a banner at random, like an A/B test, so that the results page can show what the bandit "
                    "earned over it (0 to 50).")
    policy = SelectField("Policy", default="thompson", validate_choice=False,
                         choices=[SelectChoice("thompson", "Thompson sampling per city"),
                                  SelectChoice("contextual", "Contextual: learn who clicks what")],
                         description="Contextual learns each banner's CTR by the features below; switching keeps "
                                     "the slot's history.")
    context = SelectMultipleField("Context features (contextual)", validate_choice=False,
                                  choices=[SelectChoice(f, f) for f in FEATURES],
                                  description=f"None selected: {', '.join(DEFAULT_FEATURES)}. Each feature adds "
                                              "levels to learn: pick the ones that matter.")


# What a datetime-local input sends ('T', seconds optional); the first renders the field's value.
SCHEDULE_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"]


class BannerForm(FlaskForm):
    banner_id = StringField("Banner ID", validators=[DataRequired(), Length(max=64)])
    image_url = StringField("Image URL", validators=[Optional(), Length(max=2048)],
                            description="An http(s) URL of the image, or upload a file below.")
    image_file = FileField("…or upload an image",
                           description="PNG, JPEG, GIF, WebP or SVG. Stored in Cassandra, served by every server.")
    target_url = StringField("Target URL", validators=[DataRequired(), Length(max=2048)],
                             description="Where a click on the banner goes.")
    alt = StringField("Alt text", validators=[Optional(), Length(max=300)],
                      description="Shown to screen readers and when the image cannot load.")
    active = BooleanField("Active (served)", default=True)
    starts_at = DateTimeLocalField(
        "Starts at", validators=[Optional()], format=SCHEDULE_FORMATS,
        description="Empty: serve from now. In the tenant's time zone; the banner is served from this moment.")
    ends_at = DateTimeLocalField(
        "Ends at", validators=[Optional()], format=SCHEDULE_FORMATS,
        description="Empty: no end. In the tenant's time zone; the banner is no longer served from this moment.")

    def __init__(self, *args, zone: dt.tzinfo | None = None, **kwargs) -> None:
        """``zone``: the tenant's time zone, in which the schedule is entered and shown (aware data in,
        aware data out; the browser's datetime-local input is naive)."""
        super().__init__(*args, **kwargs)
        for f in (self.starts_at, self.ends_at):
            f.tz = zone
            if zone is not None and f.data is not None and f.data.tzinfo is None:
                f.data = f.data.replace(tzinfo=zone)        # submitted: the tenant's wall-clock time

    def validate_ends_at(self, field: DateTimeLocalField) -> None:
        if field.data is not None and self.starts_at.data is not None and field.data <= self.starts_at.data:
            raise ValidationError("The end must be after the start.")


class ActiveForm(FlaskForm):
    active = HiddenField(validators=[DataRequired()])


PASSWORD_HINT = (f"At least {accounts.MIN_PASSWORD_LENGTH} characters and hard to guess: not a common password, "
                 f"a keyboard pattern or your username. A few unrelated words make a strong one.")


class UserForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=accounts.MAX_PASSWORD_LENGTH)],
                             description=PASSWORD_HINT)
    role = SelectField("Role", choices=[SelectChoice(accounts.ROLE_TENANT, "Tenant admin (one tenant)"),
                                        SelectChoice(accounts.ROLE_PLATFORM, "Platform admin (all tenants)")])
    tenant_id = SelectField("Tenant", validate_choice=False,
                            description="The tenant a tenant admin manages.")


class PasswordChangeForm(FlaskForm):
    """A user's own password change: the current one, then the new one twice."""
    current_password = PasswordField("Current password", validators=[
        DataRequired(), Length(max=accounts.MAX_PASSWORD_LENGTH)])
    new_password = PasswordField("New password", description=PASSWORD_HINT, validators=[
        DataRequired(), Length(max=accounts.MAX_PASSWORD_LENGTH)])
    confirm = PasswordField("New password again", validators=[
        DataRequired(), EqualTo("new_password", message="The two new passwords differ.")])


class InviteForm(FlaskForm):
    username = StringField("Colleague's username", validators=[DataRequired(), Length(max=64)],
                           description="Letters, digits, '_', '-', '@' and single dots, such as an e-mail address.")


class ClickFilterForm(FlaskForm):
    """The tenant's invalid-click rules (webapp.serving.click_filter): numbers are checked by the service."""

    enabled = BooleanField("Filter invalid clicks", default=True)
    min_delay_seconds = StringField(
        "Minimum seconds from impression to click", validators=[DataRequired(), Length(max=20)],
        description="A click sooner than this after its banner was shown is not a person's (0 to 3600).")
    max_clicks_per_customer = StringField(
        "Most clicks per customer ID in a window", validators=[DataRequired(), Length(max=20)],
        description="Past this, a customer's clicks are flagged; 0 turns the rule off.")
    max_clicks_per_ip = StringField(
        "Most clicks per IP address in a window", validators=[DataRequired(), Length(max=20)],
        description="Past this, an address's clicks are flagged; 0 turns the rule off.")
    window_seconds = StringField(
        "Window (seconds)", validators=[DataRequired(), Length(max=20)],
        description="The length of the fixed windows the two limits above count in (60 to 604800).")
    block_bot_user_agents = BooleanField("Flag clicks from crawler and automation user agents", default=True)
