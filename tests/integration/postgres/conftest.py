"""PostgreSQL fixtures: only postgres + replica, and a fresh migrated database per test module.

A template database is migrated once per session; each module gets `kredete_test_<random>` cloned from
it, so tests never share data and never touch the dev database `kredete`.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import psycopg
import pytest

from config.settings import resolve
from kredete.stack.logins import ROLE_SECRETS, grant_local_logins
from stores.crypto import FieldCipher
from stores.postgres import PostgresStore, migrate


@dataclass(frozen=True)
class PgUrls:
    """Connection URLs of one test database for every role, on the primary and the replica."""

    db: str
    admin: str  # superuser on the maintenance database `postgres`
    service: str
    service_replica: str
    app: str
    agent: str
    agent_replica: str
    log: str


def _with_db(url: str, db: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + db


def _role_url(base: str, role: str, password: str) -> str:
    rest = base.split("@", 1)[1]
    return f"postgresql://{role}:{password}@{rest}"


def make_urls(db: str) -> PgUrls:
    from config.secrets import local_secrets

    s = resolve()
    primary = s.postgres_url.get_secret_value()
    replica = s.postgres_replica_url.get_secret_value()
    sec = local_secrets()
    return PgUrls(
        db=db, admin=_with_db(primary, "postgres"), service=_with_db(primary, db),
        service_replica=_with_db(replica, db),
        app=_with_db(_role_url(primary, "kredete_app", sec[ROLE_SECRETS["kredete_app"]]), db),
        agent=_with_db(_role_url(primary, "kredete_agent_ro", sec[ROLE_SECRETS["kredete_agent_ro"]]), db),
        agent_replica=_with_db(_role_url(replica, "kredete_agent_ro", sec[ROLE_SECRETS["kredete_agent_ro"]]), db),
        log=_with_db(_role_url(primary, "kredete_agent_log", sec[ROLE_SECRETS["kredete_agent_log"]]), db),
    )


def create_database(admin_url: str, name: str, template: str | None = None) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        tmpl = f" TEMPLATE {template}" if template else ""
        conn.execute(f"CREATE DATABASE {name}{tmpl}")


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def wait_on_replica(replica_admin_url: str, name: str, timeout: float = 30.0) -> None:
    """CREATE DATABASE reaches the replica asynchronously; wait until it can be connected to."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(replica_admin_url, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return
        time.sleep(0.1)
    raise TimeoutError(f"database {name} did not reach the replica")


@pytest.fixture(scope="session")
def pg_stack(session_stack) -> None:
    """Only the primary and the two replicas; stopped at the end of the session if this session started them."""
    session_stack.need(["postgres", "postgres-replica", "postgres-replica2"])


@pytest.fixture(scope="session")
def pg_template(pg_stack) -> Iterator[str]:
    """A migrated template database for this session (roles get their local logins)."""
    name = f"kredete_tmpl_{secrets.token_hex(4)}"
    urls = make_urls(name)
    create_database(urls.admin, name)
    migrate.upgrade(urls.service)
    grant_local_logins(urls.service)
    yield name
    drop_database(urls.admin, name)


def fresh_database(template: str | None) -> PgUrls:
    name = f"kredete_test_{secrets.token_hex(5)}"
    urls = make_urls(name)
    create_database(urls.admin, name, template)
    from stores.postgres.pool import split_hosts

    for replica in split_hosts(urls.service_replica):
        wait_on_replica(_with_db(replica, "postgres"), name)
    return urls


@pytest.fixture(scope="module")
def pg_db(pg_template) -> Iterator[PgUrls]:
    """A fresh migrated database for the test module, dropped afterwards."""
    urls = fresh_database(pg_template)
    yield urls
    drop_database(urls.admin, urls.db)


@pytest.fixture(scope="module")
def empty_db(pg_stack) -> Iterator[PgUrls]:
    """A fresh database with no migrations applied."""
    urls = fresh_database(None)
    yield urls
    drop_database(urls.admin, urls.db)


async def _store(primary: str, replica: str | None = None, *, read_only: bool = False) -> PostgresStore:
    return await PostgresStore(primary, replica, read_only=read_only, statement_timeout_ms=15000,
                               max_size=20).connect()


@pytest.fixture(scope="module")
async def service_store(pg_db) -> AsyncIterator[PostgresStore]:
    """Superuser (the local `service` role) on primary + replica."""
    store = await _store(pg_db.service, pg_db.service_replica)
    yield store
    await store.close()


@pytest.fixture(scope="module")
async def app_store(pg_db) -> AsyncIterator[PostgresStore]:
    store = await _store(pg_db.app)
    yield store
    await store.close()


@pytest.fixture(scope="module")
async def agent_store(pg_db) -> AsyncIterator[PostgresStore]:
    store = await _store(pg_db.agent, pg_db.agent_replica, read_only=True)
    yield store
    await store.close()


@pytest.fixture(scope="module")
async def log_store(pg_db) -> AsyncIterator[PostgresStore]:
    store = await _store(pg_db.log)
    yield store
    await store.close()


@pytest.fixture(scope="session")
def cipher() -> FieldCipher:
    return FieldCipher.from_settings(resolve())


async def wait_for_replica(store: PostgresStore, query: str, *args, timeout: float = 10.0):
    """Poll the replica until `query` returns a non-None value (streaming replication is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        async with store.connection(replica=True) as conn:
            value = await conn.fetchval(query, *args)
        if value is not None or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)
