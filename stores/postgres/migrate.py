"""Schema migrations (alembic, `migrations/`) driven from code: upgrade, downgrade, status, local logins."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from stores.errors import StoreConfigError, StoreUnavailable, redact_url

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
#: Login roles the migrations create, and the local-stack secret holding each one's password.
ROLE_SECRETS = {"kredete_app": "postgres_app", "kredete_agent_ro": "postgres_agent_ro",
                "kredete_agent_log": "postgres_agent_log"}


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
    return url.replace("postgresql://", "postgresql+psycopg://", 1).replace("postgres://", "postgresql+psycopg://", 1)


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


def is_local_stack(url: str) -> bool:
    from kredete.stack import ports

    parts = urlsplit(url)
    return parts.hostname in ("127.0.0.1", "localhost") and parts.port in (ports.POSTGRES, ports.POSTGRES_REPLICA)


def grant_local_logins(url: str) -> list[str]:
    """Give the migration-created roles LOGIN and their local-stack passwords; returns the roles changed.

    Only for the local stack: in production the roles' credentials come from the secret manager.
    """
    import psycopg
    from psycopg import sql

    from kredete.stack.secrets import local_secrets

    if not is_local_stack(url):
        raise StoreConfigError("role passwords are set only on the local stack", store="postgres")
    secrets = local_secrets()
    changed: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        for role, secret in ROLE_SECRETS.items():
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
                continue
            conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(secrets[secret])))
            changed.append(role)
    return changed
