"""Domain exceptions, turned into JSON errors by one handler registered in the factory."""

from __future__ import annotations

import logging

from cassandra import OperationTimedOut, ReadTimeout, Unavailable, WriteTimeout
from cassandra.cluster import NoHostAvailable
from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.exceptions import ServiceUnavailable as HTTPServiceUnavailable

log = logging.getLogger(__name__)

# The driver's answers when Cassandra cannot take a request now: a retry later may succeed.
DATABASE_UNAVAILABLE = (NoHostAvailable, Unavailable, OperationTimedOut, ReadTimeout, WriteTimeout)


class DomainError(Exception):
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(DomainError):
    status = 400


class InvalidToken(DomainError):
    status = 400


class Unauthorized(DomainError):
    status = 401


class Forbidden(DomainError):
    """Not allowed: a tenant API key on another tenant's resource or without the scope needed, a platform-only
    operation, or a serve from an origin the tenant does not list."""

    status = 403


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    """The request is valid but the current state refuses it (e.g. a slot already has its most banners)."""

    status = 409


class ServiceUnavailable(DomainError):
    status = 503

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after      # seconds, sent as Retry-After


def wants_json() -> bool:
    return request.path.startswith("/v1/") or request.is_json


def init_app(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def domain_error(exc: DomainError):
        response = jsonify(error=exc.message)
        response.status_code = exc.status
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="banner-bandit"'
        if getattr(exc, "retry_after", None) is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if not wants_json():
            return exc
        response = jsonify(error=exc.description or exc.name)
        response.status_code = exc.code or 500
        for name, value in exc.get_headers():  # e.g. Allow on 405, which RFC 9110 requires
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    def database_unavailable(exc: Exception):
        """Cassandra is down or too slow: 503 with Retry-After, never a 500. A timed-out write may still have
        been applied; every management write is an idempotent PUT, so the client's retry is safe."""
        log.warning("database unavailable for %s %s: %r", request.method, request.path, exc)
        return http_error(HTTPServiceUnavailable(
            description="the database is unavailable right now; try again shortly", retry_after=1))

    for unavailable in DATABASE_UNAVAILABLE:
        app.register_error_handler(unavailable, database_unavailable)

    @app.errorhandler(RequestEntityTooLarge)
    def body_too_large(exc: RequestEntityTooLarge):
        if not wants_json():
            return exc
        response = jsonify(error=f"request body is too large (at most {current_app.config['MAX_CONTENT_LENGTH']} "
                                 "bytes)")
        response.status_code = 413
        return response
