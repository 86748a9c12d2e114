"""A named dataset (evals/harness.py `Dataset`) is reused only while its schema is the migrations' head: one
built before a newer migration is rebuilt, not handed to the tests as it is."""

from __future__ import annotations

import asyncio

import pytest

from config.settings import resolve
from evals.harness import Dataset
from stores.postgres import migrate
from stores.postgres.bulk_load import direct_connection
from stores.postgres.databases import drop_database

pytestmark = pytest.mark.integration


async def _mark_one_migration_behind(url: str) -> None:
    previous = migrate.status(url).applied[-2]
    async with direct_connection(url) as conn:
        await conn.execute("UPDATE alembic_version SET version_num = $1", previous)


def test_a_dataset_behind_the_migrations_is_rebuilt(stack):
    ds = Dataset(name="reusecheck", users=2, seed=7)
    url = ds.settings().postgres_url.get_secret_value()
    try:
        assert ds.prepare(fresh=True) is True
        assert ds.is_ready() and ds.prepare() is False  # same spec, schema at head: reused
        asyncio.run(_mark_one_migration_behind(url))  # as if built by a checkout one migration older
        assert migrate.status(url).pending
        assert not ds.is_ready()
        assert ds.prepare() is True  # rebuilt
        assert not migrate.status(url).pending and ds.is_ready()
    finally:
        asyncio.run(drop_database(resolve().postgres_url.get_secret_value(), ds.db))
        ds.marker.unlink(missing_ok=True)
