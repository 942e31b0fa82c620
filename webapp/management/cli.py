"""Flask CLI commands: schema, event log migration, demo data, dashboard users."""

from __future__ import annotations

import sys

import click
from flask import Flask, current_app

from webapp.dashboard import accounts
from webapp.management import migrate_events, services
from webapp.web.errors import DomainError

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

    @app.cli.command("migrate-events")
    @click.option("--concurrency", default=64, show_default=True, help="Concurrent writes.")
    @click.option("--no-progress", is_flag=True, help="No progress bar (logs, CI).")
    def migrate_events_command(concurrency: int, no_progress: bool) -> None:
        """Copy the day-partitioned event log (before cql/006) into impression_log and click_log.
        Idempotent and resumable; the old tables are kept (docs/operations.md, Upgrading)."""
        db = current_app.extensions["cassandra"]
        result = migrate_events.migrate(db, progress=not no_progress, concurrency=concurrency, log=click.echo)
        click.echo(f"migrate-events: {result.summary()}")
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

    @app.cli.command("create-admin")
    @click.argument("username")
    @click.option("--tenant", default="", help="Make a tenant admin of this tenant (default: a platform admin).")
    @click.option("--password-stdin", is_flag=True,
                  help="Read the password from standard input instead of prompting.")
    @click.option("--update", is_flag=True, help="Reset the password and role if the user exists.")
    def create_admin(username: str, tenant: str, password_stdin: bool, update: bool) -> None:
        """Create a dashboard user: a platform admin, or with --tenant a tenant admin."""
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        db = current_app.extensions["cassandra"]
        role = accounts.ROLE_TENANT if tenant else accounts.ROLE_PLATFORM
        try:
            written, user = accounts.create_user(db, username, password, role, tenant, replace=update)
        except DomainError as exc:
            raise click.ClickException(exc.message) from None
        finally:
            db.shutdown()
        if not written:
            raise click.ClickException(f"user {user.username} already exists (use --update to reset it)")
        what = f"tenant admin of {user.tenant_id}" if user.tenant_id else "platform admin"
        click.echo(f"dashboard user {user.username} saved: {what}")
