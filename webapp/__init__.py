"""Banner Bandit: banner selection by Thompson sampling on Cassandra."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask

ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: config, then each integration's init_app, then the blueprints. Connects nothing."""
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    from webapp.web import config as config_module
    from webapp.web import validation

    app.request_class = validation.Utf8Request
    app.config.from_mapping(config_module.load(test_config))
    app.json.sort_keys = False
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")

    from webapp.management import cli
    from webapp.storage import database
    from webapp.web import errors, rate_limits, security

    errors.init_app(app)
    database.init_app(app)
    cli.init_app(app)
    security.init_app(app)
    rate_limits.init_app(app)

    from webapp.management import api
    from webapp.serving import media, views
    from webapp.web import health, metrics, openapi

    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(media.bp)

    from webapp import dashboard

    dashboard.init_app(app)
    return app
