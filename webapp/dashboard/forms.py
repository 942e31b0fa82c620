"""Dashboard forms (Flask-WTF, each with its CSRF token). Fields check presence and length only: the rules
of what is valid live in the service layer, whose DomainError messages the views show as form errors."""

from __future__ import annotations

from functools import cache
from zoneinfo import available_timezones

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import BooleanField, HiddenField, PasswordField, SelectChoice, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

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


class ActiveForm(FlaskForm):
    active = HiddenField(validators=[DataRequired()])


class UserForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=accounts.MAX_PASSWORD_LENGTH)],
                             description=f"At least {accounts.MIN_PASSWORD_LENGTH} characters.")
    role = SelectField("Role", choices=[SelectChoice(accounts.ROLE_TENANT, "Tenant admin (one tenant)"),
                                        SelectChoice(accounts.ROLE_PLATFORM, "Platform admin (all tenants)")])
    tenant_id = SelectField("Tenant", validate_choice=False,
                            description="The tenant a tenant admin manages.")
