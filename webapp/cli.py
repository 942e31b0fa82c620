"""Flask CLI commands: schema, demo data."""

from __future__ import annotations

import click
from flask import Flask, current_app

from webapp import services

DEMO_BANNERS = [
    ("summer-sale", "Summer Sale: 40% off"),
    ("free-shipping", "Free shipping on every order"),
    ("new-arrivals", "New arrivals this week"),
    ("electronics-week", "Electronics week"),
    ("festive-offers", "Festive offers"),
    ("members-only", "Members-only deals"),
]


def init_app(app: Flask) -> None:
    @app.cli.command("init-db")
    def init_db() -> None:
        """Create the keyspace (if absent) and apply cql/*.cql. Idempotent."""
        db = current_app.extensions["cassandra"]
        applied = db.apply_schema()
        click.echo(f"schema applied to keyspace {db.keyspace}: {', '.join(applied)}")
        db.shutdown()

    @app.cli.command("seed-demo")
    @click.option("--base-url", default="http://127.0.0.1:8000", show_default=True,
                  help="Where the server is reached; banner images and targets point there.")
    def seed_demo(base_url: str) -> None:
        """Tenant 'demo' with slot 'home-hero' of six banners. Idempotent."""
        db = current_app.extensions["cassandra"]
        base = base_url.rstrip("/")
        timezone = current_app.config["DEFAULT_TIMEZONE"]
        services.put_tenant(db, "demo", "Bandit Bazaar (demo)", timezone, timezone)
        services.put_slot(db, "demo", "home-hero", "Home page hero")
        for banner_id, alt in DEMO_BANNERS:
            services.put_banner(db, "demo", "home-hero", banner_id, alt=alt, active=True,
                                image_url=f"{base}/static/banners/{banner_id}.svg",
                                target_url=f"{base}/?clicked={banner_id}")
        click.echo(f"demo tenant seeded: demo/home-hero with {len(DEMO_BANNERS)} banners")
        db.shutdown()
