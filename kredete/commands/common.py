"""Helpers shared by the CLI command modules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from stores.mongo.client import MongoStore

err = Console(stderr=True)
T = TypeVar("T")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line error (no traceback) and exit. The message is printed as text: a server's log line in
    it (e.g. OpenSearch's `[/ (/dev/vda)]`) would otherwise be read as markup and end in a MarkupError."""
    err.print(f"[red]error:[/] {escape(message)}")
    raise typer.Exit(code)


async def with_credit_store(fn: Callable[[MongoStore], Awaitable[T]], *, keyset: bool = False) -> T:
    """`fn` on the settings' credit store, closed after; a store error, on connecting or in `fn`, ends the
    command with its one-line message. `keyset`: with FerretDB's PostgreSQL read through its reader role (the
    range reads of the outbox and retention jobs, `stores.mongo.backend_keyset`), when the settings name it."""
    from config.settings import resolve
    from stores.errors import StoreError
    from stores.mongo.client import MongoStore

    s = resolve()
    try:
        backend = s.ferretdb_reader_url.get_secret_value() if keyset and s.ferretdb_reader_url else None
        store = await MongoStore(s.mongo_url.get_secret_value(), s.mongo_db, timeout=s.connect_timeout_s,
                                 backend_url=backend).connect()
    except StoreError as exc:
        fail(str(exc))
    try:
        return await fn(store)
    except StoreError as exc:
        fail(str(exc))
    finally:
        await store.close()
