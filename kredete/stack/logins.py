"""Local-stack logins of the roles the migrations create (production takes them from a secret manager)."""

from __future__ import annotations

from urllib.parse import urlsplit

from config import ports
from config.errors import ConfigError
from config.secrets import local_secrets

#: Login roles the migrations create, and the local-stack secret holding each one's password.
ROLE_SECRETS = {"kredete_app": "postgres_app", "kredete_agent_ro": "postgres_agent_ro",
                "kredete_agent_log": "postgres_agent_log"}


def is_local_stack(url: str) -> bool:
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2].split(",")  # a multi-host URL (HA profile) names every member
    local = {ports.POSTGRES, ports.POSTGRES_REPLICA, ports.POSTGRES_REPLICA2, *ports.HA_POSTGRES}
    return all(h.rpartition(":")[0] in ("127.0.0.1", "localhost") and h.rpartition(":")[2].isdigit()
               and int(h.rpartition(":")[2]) in local for h in hosts)


def grant_local_logins(url: str) -> list[str]:
    """Give the migration-created roles LOGIN and their local-stack passwords; returns the roles changed."""
    import psycopg
    from psycopg import sql

    if not is_local_stack(url):
        raise ConfigError("role passwords are set only on the local stack", store="postgres")
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
