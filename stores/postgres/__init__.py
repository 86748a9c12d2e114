"""PostgreSQL payments database: the pool adapter and the repositories built on it."""

from stores.postgres.pool import PostgresStore

__all__ = ["PostgresStore"]
