"""Banner images uploaded through the dashboard: validated, stored in Cassandra, served to every publisher.

The type is sniffed from the bytes (PNG, JPEG, GIF, WebP or SVG), never taken from the client. SVG may carry
script, so every image is served with a Content-Security-Policy that forbids scripts and sandboxes the
document, and with nosniff: opened directly it cannot run code on this origin, and inside an <img> a
browser never runs an SVG's scripts anyway.
"""

from __future__ import annotations

import hashlib
import re

from flask import Blueprint, Response, current_app, url_for

from webapp.storage import store
from webapp.storage.database import Database
from webapp.web import validation
from webapp.web.errors import InvalidInput, NotFound

bp = Blueprint("media", __name__)

IMAGE_ID_RE = re.compile(r"^[0-9a-f]{64}$")
# An SVG document: optional XML declaration, comments and doctype, then the <svg> root element.
_SVG_START = re.compile(rb"^\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*(<!DOCTYPE svg[^>]*>\s*)?(<!--.*?-->\s*)*"
                        rb"<svg[\s>]", re.DOTALL | re.IGNORECASE)
IMAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"


def sniff_image_type(data: bytes) -> str | None:
    """The image's media type from its first bytes, or None when it is none of the accepted types."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if _SVG_START.match(data[:4096]):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return "image/svg+xml"
    return None


def save_image(db: Database, tenant_id: str, data: bytes, max_bytes: int) -> str:
    """Validate and store an uploaded image of ``tenant_id``; returns its id (SHA-256 of the bytes)."""
    validation.identifier(tenant_id, "tenant")
    if not data:
        raise InvalidInput("the image file is empty")
    if len(data) > max_bytes:
        raise InvalidInput(f"the image is larger than {max_bytes:,} bytes, the most accepted")
    content_type = sniff_image_type(data)
    if content_type is None:
        raise InvalidInput("the image must be a PNG, JPEG, GIF, WebP or SVG file")
    image_id = hashlib.sha256(data).hexdigest()
    store.put_image(db, tenant_id, image_id, content_type, data)
    return image_id


def image_url(tenant_id: str, image_id: str) -> str:
    """The absolute URL publishers load the image from (PUBLIC_BASE_URL, else this request's host)."""
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    if base:
        return base + url_for("media.image", tenant=tenant_id, image_id=image_id)
    return url_for("media.image", tenant=tenant_id, image_id=image_id, _external=True)


@bp.get("/media/<tenant>/<image_id>")
def image(tenant: str, image_id: str):
    """An uploaded banner image (public: publisher pages show it)."""
    validation.identifier(tenant, "tenant")
    if not IMAGE_ID_RE.match(image_id):
        raise NotFound("no such image")
    found = store.get_image(current_app.extensions["cassandra"], tenant, image_id)
    if found is None:
        raise NotFound("no such image")
    return Response(found["data"], mimetype=found["content_type"], headers={
        "Cache-Control": "public, max-age=31536000, immutable",   # the id is the content's hash
        "Content-Security-Policy": IMAGE_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Access-Control-Allow-Origin": "*",
    })
