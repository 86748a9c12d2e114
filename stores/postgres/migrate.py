"""Schema migrations (alembic, `migrations/`) driven from code: upgrade, downgrade, status, local logins."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from stores.errors import StoreUnavailable, redact_url

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


@dataclass(frozen=True)
class MigrationStatus:
    current: str | None
    head: str
    pending: list[str]
    applied: list[str]


def alembic_config(url: str) -> Config:
    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["url"] = url  # kept out of the ini: '%' in passwords would break interpolation
    return cfg


def _sync_url(url: str) -> str:
    """The SQLAlchemy (psycopg) form of a libpq URL; a multi-host URL (HA profile) becomes repeated `host=`
    query parameters, the form SQLAlchemy parses."""
    from urllib.parse import urlsplit, urlunsplit

    url = url.replace("postgresql://", "postgresql+psycopg://", 1).replace("postgres://", "postgresql+psycopg://", 1)
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    if "," not in hosts:
        return url
    query = "&".join([*(f"host={h}" for h in hosts.split(",")), *([parts.query] if parts.query else [])])
    return urlunsplit(parts._replace(netloc=f"{userinfo}@" if userinfo else "", query=query))


def _guard(exc: Exception, url: str) -> StoreUnavailable:
    return StoreUnavailable(f"migration against {redact_url(url)} failed: {type(exc).__name__}", store="postgres")


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "-1") -> None:
    """`-1`: one step back; `base`: everything."""
    command.downgrade(alembic_config(url), revision)


def status(url: str) -> MigrationStatus:
    from sqlalchemy import create_engine, pool

    script = ScriptDirectory.from_config(alembic_config(url))
    engine = create_engine(_sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except Exception as exc:  # any driver error means "cannot tell"
        raise _guard(exc, url) from exc
    finally:
        engine.dispose()
    order = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    head = script.get_current_head() or ""
    applied = order[: order.index(current) + 1] if current in order else []
    return MigrationStatus(current=current, head=head, pending=order[len(applied):], applied=applied)
