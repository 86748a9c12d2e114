"""`kredete seed`: deterministic synthetic data in the payments database (and the credit store, if present)."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
from typing import Annotated

import typer

from kredete.commands.common import err, fail

MONGO_HOOK = "kredete.seed.mongo"


def register(app: typer.Typer) -> None:
    app.command("seed")(seed)


def seed(
    users: Annotated[int, typer.Option("--users", min=1, help="How many synthetic users.")] = 200,
    seed_value: Annotated[int, typer.Option("--seed", help="Same seed, same data.")] = 42,
    transactions_per_user: Annotated[int, typer.Option("--transactions-per-user", min=1, max=1000)] = 10,
    skip_mongo: Annotated[bool, typer.Option("--skip-mongo", help="Do not seed the credit store.")] = False,
    skip_documents: Annotated[bool, typer.Option("--skip-documents",
                                                 help="Do not put synthetic documents into S3.")] = False,
    url: Annotated[str | None, typer.Option("--url", help="PostgreSQL URL (default: settings / local stack).",
                                            show_default=False)] = None,
) -> None:
    """Load N users with their wallets, transactions, postings, refunds, FX and KYC; resumable and idempotent."""
    from kredete.commands.db import _importable

    _importable()
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from config.settings import resolve
    from kredete.seed.payments import SeedConfig, seed_payments
    from kredete.seed.people import person
    from stores.crypto import FieldCipher
    from stores.errors import StoreError
    from stores.postgres import migrate

    settings = resolve()
    target = url or settings.postgres_url.get_secret_value()
    try:
        if migrate.status(target).pending:
            fail("the database has pending migrations: run `kredete db migrate` first")
    except StoreError as exc:
        fail(str(exc))
    config = SeedConfig(users=users, seed=seed_value, transactions_per_user=transactions_per_user)
    cipher = FieldCipher.from_settings(settings)

    async def run():
        from stores.postgres.bulk_load import direct_connection

        async with direct_connection(target) as conn:
            with Progress(TextColumn("[bold]payments[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("users"),
                          TimeElapsedColumn(), console=err) as bar:
                task = bar.add_task("seed", total=users)
                return await seed_payments(conn, config, cipher, on_progress=lambda n: bar.advance(task, n))

    try:
        report = asyncio.run(run())
    except StoreError as exc:
        fail(str(exc))
    table = Table(title=f"payments seed (seed={seed_value}, users={users}, k={transactions_per_user})")
    table.add_column("table")
    table.add_column("rows loaded now", justify="right")
    for name, n in report.rows.items():
        if n:
            table.add_row(name, f"{n:,}")
    Console().print(table)
    err.print(f"{report.batches_loaded} batches loaded, {report.batches_skipped} already there, "
              f"{report.seconds:.1f}s")
    if report.batches_loaded:
        how = ("bulk path: one transaction, validated set-based before commit" if report.mode == "bulk"
               else f"safe path: row-by-row triggers ({report.fallback_reason})")
        err.print(how)

    people = [person(seed_value, i) for i in range(users)]
    if not skip_mongo:
        if importlib.util.find_spec(MONGO_HOOK) is None:
            err.print(f"credit store: {MONGO_HOOK} is not available yet; skipped")
        else:
            hook = importlib.import_module(MONGO_HOOK).seed_credit_store
            result = hook(settings, people, seed_value, err)
            if inspect.isawaitable(result):
                asyncio.run(result)
    if not skip_documents:
        from kredete.seed.documents import seed_documents

        try:
            written = asyncio.run(seed_documents(settings, people, seed_value, err))
        except StoreError as exc:
            fail(f"documents: {exc}")
        err.print(f"documents: {written} object(s) written to S3")
