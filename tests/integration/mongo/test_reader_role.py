"""FerretDB's start grants the `ferretdb_reader` role only when the cluster lacks it: one query when it is there;
the whole grant when the role is gone (a new cluster, or one restored from before the role) or its password is
not the local secret's. The stack's own FerretDB and PostgreSQL, for real."""

from __future__ import annotations

import asyncpg
import pytest

from config.secrets import local_secrets
from config.settings import resolve
from kredete.stack.ferretdb import FerretDBServer, scram_verifies


class CountedFerretDB(FerretDBServer):
    """The stack's FerretDB, noting each statement its start runs on the backend."""

    def __init__(self) -> None:
        super().__init__()
        self.statements: list[str] = []

    def _run_sql(self):
        real = FerretDBServer._run_sql()

        def run(sql: str, **kw) -> str:
            self.statements.append(sql)
            return real(sql, **kw)

        return run


@pytest.fixture
def superuser_sql(mongo_url):
    if resolve().ferretdb_reader_url is None:
        pytest.skip("no FerretDB reader URL (an external MongoDB-wire server)")
    run_sql = FerretDBServer._run_sql()
    yield run_sql
    FerretDBServer._grant_reader(run_sql)  # whatever a failed test left, the stack's role is whole again


async def _reads_as_reader(schema: str, table: str) -> int:
    conn = await asyncpg.connect(resolve().ferretdb_reader_url.get_secret_value())
    try:
        return await conn.fetchval(f'SELECT count(*) FROM "{schema}"."{table}"')
    finally:
        await conn.close()


def _table(db, collection: str) -> str:
    """The PostgreSQL table FerretDB keeps `collection` of `db` in (read as the superuser)."""
    return FerretDBServer._run_sql()(f'SELECT _jsonb ->> \'table\' FROM "{db.name}"._ferretdb_database_metadata '
                   f"WHERE _jsonb ->> '_id' = '{collection}'", db="ferretdb").strip()


def _grants(statements: list[str]) -> list[str]:
    return [s for s in statements if "GRANT" in s or "ALTER ROLE" in s or "CREATE ROLE" in s]


async def test_a_start_with_the_role_in_place_only_checks(superuser_sql):
    FerretDBServer._grant_reader(superuser_sql)
    server = CountedFerretDB()
    server.start()
    assert len(server.statements) == 1 and _grants(server.statements) == []


async def test_a_cluster_without_the_role_gets_it_whole_on_start(superuser_sql, db):
    await db["before"].insert_one({"a": 1})
    superuser_sql("DROP OWNED BY ferretdb_reader; DROP ROLE ferretdb_reader", db="ferretdb")
    assert superuser_sql("SELECT count(*) FROM pg_roles WHERE rolname = 'ferretdb_reader'").strip() == "0"
    server = CountedFerretDB()
    server.start()
    assert _grants(server.statements), "the role was not made again"
    await db["after"].insert_one({"a": 2})  # a table FerretDB makes after the grant: default privileges
    assert await _reads_as_reader(db.name, _table(db, "before")) == 1
    assert await _reads_as_reader(db.name, _table(db, "after")) == 1
    again = CountedFerretDB()
    again.start()
    assert _grants(again.statements) == []


async def test_a_role_with_another_password_gets_the_local_one_on_start(superuser_sql, db):
    await db["pw"].insert_one({"a": 1})
    superuser_sql("ALTER ROLE ferretdb_reader PASSWORD 'from-another-stack'")
    with pytest.raises(asyncpg.InvalidPasswordError):
        await _reads_as_reader(db.name, _table(db, "pw"))
    server = CountedFerretDB()
    server.start()
    assert _grants(server.statements)
    assert await _reads_as_reader(db.name, _table(db, "pw")) == 1


def test_the_scram_check_knows_the_password_from_others(superuser_sql):
    verifier = superuser_sql(
        "SELECT rolpassword FROM pg_authid WHERE rolname = 'ferretdb_reader'").strip()
    assert scram_verifies(verifier, local_secrets()["postgres_ferretdb_reader"])
    assert not scram_verifies(verifier, "wrong")
    assert not scram_verifies("md5" + "0" * 32, "wrong")
    assert not scram_verifies("", "wrong")
