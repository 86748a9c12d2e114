"""Alembic environment: one transaction per migration, raw SQL, URL from the caller or the settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool


def _url() -> str:
    url = context.config.attributes.get("url")
    if url is None:
        from config.settings import resolve

        url = resolve().postgres_url.get_secret_value()
    # Migrations run on psycopg (sync); the services use asyncpg on the same URL.
    from stores.postgres.migrate import _sync_url

    return _sync_url(url)


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        # A failed migration rolls back alone and leaves the database at the previous revision.
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) mode is not supported: migrations run SQL on the driver connection")
run_migrations_online()
