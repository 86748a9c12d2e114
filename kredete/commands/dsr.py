"""`kredete dsr erase|verify|export|hold|release|reapply|status`: data-subject requests (services/privacy.py).

Exit codes: 0 done (verify: passed), 1 an error or a failed verification, 2 refused before anything changed
(bad reason, unknown user, staff subject, legal hold), 3 stopped part-way: what ran is recorded, nothing is
reported erased, and the same command continues it.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from kredete.commands.common import err, fail

dsr_app = typer.Typer(no_args_is_help=True, help="Data-subject requests: erase (crypto-shredding), verify, export.")

Users = Annotated[list[str] | None, typer.Option("--user", help="Customer id (UUID); repeat for a batch.",
                                                 show_default=False)]
Reason = Annotated[str, typer.Option("--reason", help="Ticket reference and purpose, e.g. 'DSR-1234: customer asked "
                                                      "to close the account and erase their data'.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]

EXIT_REFUSED, EXIT_PARTIAL = 2, 3


def register(app: typer.Typer) -> None:
    app.add_typer(dsr_app, name="dsr")


def _run(coro_fn, *, pause: float = 0.0) -> Any:
    from kredete.commands.db import _importable

    _importable()
    from services.privacy import DsrRefused, PartialErasure, PrivacyService
    from stores.errors import StoreError

    async def go():
        svc = await PrivacyService.open(step_pause_s=pause)
        try:
            return await coro_fn(svc)
        finally:
            await svc.close()

    try:
        return asyncio.run(go())
    except DsrRefused as exc:
        fail(f"refused: {exc}", EXIT_REFUSED)
    except PartialErasure as exc:
        fail(str(exc), EXIT_PARTIAL)
    except StoreError as exc:
        fail(str(exc))


def _dump(value: Any) -> str:
    from services.privacy import _json

    return json.dumps(value, default=_json, indent=1, sort_keys=True)


@dsr_app.command("erase")
def erase(users: Users = None, reason: Reason = ...,  # type: ignore[assignment]
          users_file: Annotated[Path | None, typer.Option("--users-file", help="One user id a line (a batch).",
                                                          show_default=False)] = None,
          as_json: AsJson = False) -> None:
    """Erase customers in every store; idempotent and resumable (rerun continues a stopped run)."""
    ids = list(users or [])
    if users_file is not None:
        ids += [ln.strip() for ln in users_file.read_text().splitlines() if ln.strip()]
    if not ids:
        fail("give --user (or --users-file)", EXIT_REFUSED)
    pause = float(os.environ.get("KREDETE_DSR_STEP_PAUSE_S", "0") or 0)  # tests: a window to interrupt

    def step(name: str, detail: dict[str, Any], seconds: float) -> None:
        err.print(f"[green]done[/] {name:<12} {seconds * 1000:7.0f} ms  {json.dumps(detail, default=str)[:160]}",
                  highlight=False)

    results = _run(lambda svc: svc.erase(ids, reason, on_step=step), pause=pause)
    if as_json:
        print(_dump([r.__dict__ for r in results]))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("user", "request", "status", "receipt")
    for r in results:
        table.add_row(r.user_id, r.request_id[:8], r.status,
                      f"{r.receipt.get('bucket', '')}/{r.receipt.get('key', '')}" if r.receipt else "-")
    Console().print(table)
    err.print("check with `kredete dsr verify --user <id>`")


@dsr_app.command("verify")
def verify(user: Annotated[str, typer.Option("--user", help="Customer id (UUID).")], as_json: AsJson = False) -> None:
    """Raw scans of every store for the user's ids and their values (as fingerprints); zero hits passes."""
    report = _run(lambda svc: svc.verify(user))
    if as_json:
        print(_dump({"user_id": report.user_id, "erased": report.erased, "fingerprints": report.fingerprints,
                     "fingerprint_source": report.fingerprint_source, "hits": report.hits, "passed": report.passed,
                     "stores": [s.__dict__ for s in report.stores]}))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table("store", "scanned", "hits", "kept by policy", "details", title=f"dsr verify {report.user_id}")
        for s in report.stores:
            detail = s.error or json.dumps(s.details, default=str)
            if s.notes:
                detail += "; " + "; ".join(s.notes)
            table.add_row(s.store, s.scanned, str(s.hits), str(s.kept) if s.kept else "", detail[:200])
        Console(width=200).print(table)
        print(f"fingerprints: {report.fingerprints} ({report.fingerprint_source}); erased: "
              f"{'yes' if report.erased else 'no'}")
        print(f"result: {'PASS' if report.passed else 'FAIL'} ({report.hits} hits)")
    if not report.passed:
        raise typer.Exit(1)


@dsr_app.command("export")
def export(user: Annotated[str, typer.Option("--user", help="Customer id (UUID).")], reason: Reason = ...,  # type: ignore[assignment]
           as_json: AsJson = False) -> None:
    """All of the user's data (JSON + documents) in an AES-256 zip in the documents bucket; prints a 15-minute
    link and the archive's one-time password (deliver it through another channel; it is stored nowhere)."""
    res = _run(lambda svc: svc.export(user, reason))
    if as_json:
        print(_dump(res.__dict__))
        return
    print(f"request   {res.request_id} ({'data found' if res.found else 'no data held: empty archive'})")
    print(f"archive   {res.key} ({res.documents} documents; "
          + ", ".join(f"{k} {v}" for k, v in res.counts.items()) + ")")
    print(f"link      {res.url}")
    print(f"expires   {res.expires_at:%Y-%m-%d %H:%M:%S} UTC (15 minutes)")
    print(f"password  {res.password}   <- give it to the customer through another channel; it is not stored")


@dsr_app.command("hold")
def hold(user: Annotated[str, typer.Option("--user")], reason: Reason = ...) -> None:  # type: ignore[assignment]
    """Put a customer under legal hold: erasure is refused until released."""
    s = _run(lambda svc: svc.hold(user, reason))
    print(f"{s.user_id}: legal hold since {s.legal_hold_at:%Y-%m-%d %H:%M} UTC")


@dsr_app.command("release")
def release(user: Annotated[str, typer.Option("--user")], reason: Reason = ...) -> None:  # type: ignore[assignment]
    """Release a customer's legal hold."""
    s = _run(lambda svc: svc.hold(user, reason, release=True))
    print(f"{s.user_id}: no legal hold")


@dsr_app.command("reapply")
def reapply(as_json: AsJson = False) -> None:
    """Re-erase every subject of the deletion receipts in the configured stores: run it after restoring a backup,
    before the restored data serves."""
    out = _run(lambda svc: svc.reapply())
    print(_dump(out) if as_json else "\n".join(f"{k}: {v}" for k, v in out.items()))


@dsr_app.command("status")
def status(user: Annotated[str, typer.Option("--user")]) -> None:
    """The user's newest erasure request and its steps."""
    import uuid

    async def go(svc):
        return await svc.repo.last_erasure(uuid.UUID(user))

    req = _run(go)
    if req is None:
        print("no erasure on record")
        return
    print(f"request {req.id} {req.status} (ticket {req.ticket}, started {req.started_at:%Y-%m-%d %H:%M:%S})")
    from services.privacy import STEPS

    for name in STEPS:
        st = req.steps.get(name)
        print(f"  {name:<12} {st['status'] if st else 'pending':<8} {(st or {}).get('error') or ''}")
