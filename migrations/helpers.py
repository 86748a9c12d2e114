"""Helpers shared by the migration scripts.

Migrations are raw SQL run on the driver connection, so SQLAlchemy never parses `:name` or `%`
inside function bodies and literals.
"""

from __future__ import annotations

from alembic import op


def sql(statement: str) -> None:
    """Run one or more SQL statements verbatim, inside the migration's transaction.

    psycopg sends a parameterless statement with the simple query protocol, which accepts a script.
    """
    op.get_bind().connection.driver_connection.execute(statement)


def monthly_partitions(parent: str, first: str = "2024-01-01", months: int = 48) -> None:
    """Create `months` monthly partitions of `parent` from `first`, plus a default partition."""
    sql(f"SELECT ensure_monthly_partitions('{parent}'::regclass, DATE '{first}', {months});")
    sql(f"CREATE TABLE {parent}_default PARTITION OF {parent} DEFAULT;")
