"""`kredete db migrate|rollback|status|verify-audit|check-balances|rotate-keys` for the payments database."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from kredete.commands.common import err, fail

db_app = typer.Typer(no_args_is_help=True, help="Migrate, roll back and check the PostgreSQL payments database.")

Url = Annotated[str | None, typer.Option("--url", help="PostgreSQL URL (default: KREDETE_POSTGRES_URL or the "
                                                       "local stack).", show_default=False)]


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")


def _importable() -> None:
    """`stores/` and `migrations/` live at the repo root, beside the `kredete` package."""
    from config.paths import REPO_ROOT

    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))


def _url(url: str | None) -> str:
    if url:
        return url
    from config.settings import resolve

    return resolve().postgres_url.get_secret_value()


def _print_status(url: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from stores.postgres import migrate

    st = migrate.status(url)
    table = Table(title="payments database migrations")
    for col in ("revision", "state"):
        table.add_column(col)
    for rev in st.applied:
        table.add_row(rev, "[green]applied[/]" + (" (current)" if rev == st.current else ""))
    for rev in st.pending:
        table.add_row(rev, "[yellow]pending[/]")
    Console().print(table)


@db_app.command("migrate")
def db_migrate(url: Url = None, revision: Annotated[str, typer.Option(help="Target revision.")] = "head") -> None:
    """Apply migrations up to REVISION (head); on the local stack also give the roles their logins."""
    _importable()
    from config.errors import ConfigError
    from kredete.stack import logins
    from stores.errors import StoreError
    from stores.postgres import migrate

    target = _url(url)
    try:
        migrate.upgrade(target, revision)
        if logins.is_local_stack(target):
            roles = logins.grant_local_logins(target)
            err.print(f"local stack: LOGIN and passwords set for {', '.join(roles) or 'no roles'}")
    except (StoreError, ConfigError) as exc:
        fail(str(exc))
    except Exception as exc:  # alembic/driver errors: one line, no SQL or URL
        fail(f"migration failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    _print_status(target)


@db_app.command("rollback")
def db_rollback(url: Url = None, steps: Annotated[int, typer.Option(min=1, help="How many migrations.")] = 1,
                to: Annotated[str | None, typer.Option(help="Revision to go back to ('base' = empty).")] = None,
                yes: Annotated[bool, typer.Option("--yes", help="Needed to roll back to base.")] = False) -> None:
    """Undo the last STEPS migrations, or down to --to REVISION."""
    _importable()
    from stores.errors import StoreError
    from stores.postgres import migrate

    try:
        applied = len(migrate.status(_url(url)).applied)
    except StoreError as exc:
        fail(str(exc))
    # --steps N with N >= the applied count ends at base too: the same guard applies.
    to_base = to == "base" or (to is None and steps >= applied)
    if to_base and not yes:
        fail("rolling back to base drops every table; pass --yes")
    try:
        migrate.downgrade(_url(url), "base" if to_base else (to or f"-{steps}"))
    except Exception as exc:
        fail(f"rollback failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    _print_status(_url(url))


@db_app.command("status")
def db_status(url: Url = None) -> None:
    """Applied and pending migrations; exit 1 when some are pending."""
    _importable()
    from stores.errors import StoreError
    from stores.postgres import migrate

    try:
        _print_status(_url(url))
        if migrate.status(_url(url)).pending:
            raise typer.Exit(1)
    except StoreError as exc:
        fail(str(exc))


async def _with_store(url: str, fn):
    from stores.postgres import PostgresStore

    store = await PostgresStore(url, statement_timeout_ms=600_000).connect()
    try:
        return await fn(store)
    finally:
        await store.close()


@db_app.command("verify-audit")
def db_verify_audit(url: Url = None,
                    archive: Annotated[bool, typer.Option("--archive", help="Also download every archived "
                                                          "partition (logs bucket) and verify it row by row.")]
                    = False) -> None:
    """Recompute the audit log's hash chain (across archived, dropped partitions); exit 1 at the first broken
    link."""
    _importable()
    from rich.console import Console

    from stores.errors import StoreError
    from stores.postgres.audit import AuditRepository
    from stores.postgres.audit_archive import AuditArchiveRepository

    async def verify(store):
        # dsr area: gaps left by partitions archived and dropped by `kredete retention run` are bridged by the
        # segments recorded when they were archived (and nothing else)
        segments = await AuditArchiveRepository(store).segments()
        report = await AuditRepository(store).verify_chain(archived=segments)
        checked = None
        if archive and report.ok:
            from config.settings import resolve
            from services.retention import verify_archives
            from stores.objects.principals import objects_for

            auditor = objects_for(resolve(), "auditor")
            try:
                checked = await verify_archives(resolve(), store, auditor)
            finally:
                await auditor.close()
        return report, len(segments), checked

    try:
        report, segments, checked = asyncio.run(_with_store(_url(url), verify))
    except StoreError as exc:
        fail(str(exc))
    out = Console()
    if report.ok:
        note = f", across {segments} archived segment(s)" if segments else ""
        out.print(f"[green]audit chain intact[/]: {report.rows_checked} rows, last id {report.last_id}{note}")
        if checked is not None:
            out.print(f"[green]archives intact[/]: {checked['partitions']} partition(s), {checked['rows']} rows "
                      "re-hashed from the logs bucket")
        return
    out.print(f"[red]audit chain broken[/] at id {report.first_bad_id} after {report.rows_checked} rows: "
              f"{report.reason}")
    raise typer.Exit(1)


@db_app.command("check-balances")
def db_check_balances(url: Url = None) -> None:
    """Compare every wallet's stored balance with its ledger; exit 1 on any mismatch."""
    _importable()
    from rich.console import Console

    from stores.postgres.wallets import WalletRepository

    async def check(store) -> tuple[list[dict[str, object]], int]:
        repo = WalletRepository(store, replica_reads=False)
        return await repo.mismatches(), await repo.mismatch_count()

    rows, total = asyncio.run(_with_store(_url(url), check))
    if not rows:
        Console().print("[green]every wallet balance matches its ledger[/]")
        return
    for r in rows:
        Console().print(f"[red]mismatch[/] wallet {r['wallet_id']} {r['currency']}: stored {r['stored_minor']}, "
                        f"ledger {r['ledger_minor']}")
    if total > len(rows):
        Console().print(f"[red]{total} wallets differ from their ledger; the first {len(rows)} are listed[/]")
    raise typer.Exit(1)


@db_app.command("rotate-keys")
def db_rotate_keys(url: Url = None, batch: Annotated[int, typer.Option(min=1, max=10_000,
                                                                     help="Rows per transaction.")] = 500) -> None:
    """Re-wrap every encrypted PII value under the current master key (KREDETE_FIELD_ENCRYPTION_KEY_ID); the
    old keys (KREDETE_FIELD_ENCRYPTION_OLD_KEYS) can be dropped once it reports nothing remaining."""
    _importable()
    from rich.console import Console
    from rich.table import Table

    from config.settings import resolve
    from stores.crypto import FieldCipher
    from stores.errors import StoreError
    from stores.postgres.keys import KeyRotationRepository

    try:
        cipher = FieldCipher.from_settings(resolve())
        reports = asyncio.run(_with_store(_url(url), lambda s: KeyRotationRepository(s, replica_reads=False)
                                          .rewrap_all(cipher, batch=batch)))
        # per-user data keys: re-wrapped where they live, in the key store (no ciphertext changes)
        user_keys = cipher.keys.rewrap() if cipher.keys is not None else 0
    except StoreError as exc:
        fail(str(exc))
    table = Table("table", "re-wrapped now", "still on another key", title=f"master key {cipher.key_id}")
    for r in reports:
        table.add_row(r.table, str(r.rewrapped), str(r.remaining))
    table.add_row("key store (per-user data keys)", str(user_keys), "0")
    Console().print(table)
    if any(r.remaining for r in reports):
        raise typer.Exit(1)


@db_app.command("ensure-partitions")
def db_ensure_partitions(url: Url = None,
                         months_ahead: Annotated[int, typer.Option(min=0, max=60, help="Months after this one.")] = 3,
                         ) -> None:
    """Create this month's and the next months' partitions of transactions, ledger_entries, audit_logs."""
    _importable()
    from rich.console import Console
    from rich.table import Table

    from stores.errors import StoreError
    from stores.postgres.partitions import PartitionRepository

    try:
        reports = asyncio.run(_with_store(_url(url), lambda s: PartitionRepository(s, replica_reads=False)
                                          .ensure_ahead(months_ahead)))
    except StoreError as exc:
        fail(str(exc))
    table = Table("table", "created now", "newest partition")
    for r in reports:
        table.add_row(r.table, str(r.created), r.newest or "-")
    Console().print(table)
