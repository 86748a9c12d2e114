"""Databases on a PostgreSQL server: whether one exists, and a fresh empty one (isolated datasets of the
tests, evals and benchmarks)."""

from __future__ import annotations

import re

from stores.errors import InvalidData
from stores.postgres.bulk_load import direct_connection

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _checked(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidData(f"not a plain database name: {name!r}", store="postgres")
    return name


async def database_exists(url: str, name: str) -> bool:
    """Whether the server behind `url` has a database `name`."""
    async with direct_connection(url) as conn:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))


async def recreate_database(url: str, name: str) -> None:
    """Drop `name` (disconnecting its sessions) and create it empty, on the server behind `url`."""
    name = _checked(name)
    async with direct_connection(url) as conn:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')


async def drop_database(url: str, name: str) -> None:
    """Drop `name` if it exists (disconnecting its sessions), on the server behind `url`."""
    name = _checked(name)
    async with direct_connection(url) as conn:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
