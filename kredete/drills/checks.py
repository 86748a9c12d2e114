"""What every drill checks after recovery, and how it reports."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

from rich.console import Console

from config.errors import StackError

if TYPE_CHECKING:
    from kredete.drills.load import Ack

KREDETE = str(Path(sys.executable).with_name("kredete"))


@dataclass
class DrillReport:
    name: str
    rpo_s: float
    rto_s: float
    lost_acknowledged: int
    acknowledged: int = 0
    rpo_goal_s: float = 60.0
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def last_line(self) -> str:
        return f"RPO={self.rpo_s:.1f} RTO={self.rto_s:.1f} lost_acknowledged={self.lost_acknowledged}"

    def as_dict(self) -> dict[str, object]:
        return {"drill": self.name, "rpo_s": round(self.rpo_s, 1), "rto_s": round(self.rto_s, 1),
                "lost_acknowledged": self.lost_acknowledged, "acknowledged": self.acknowledged,
                "rpo_goal_s": self.rpo_goal_s, "ok": self.ok, "failures": self.failures, "details": self.lines}


def cli(*args: str, url: str | None = None, timeout: float = 600) -> tuple[bool, str]:
    """Run a `kredete` command (the operator's own tool) and return (succeeded, last output line)."""
    argv = [KREDETE, *args] + (["--url", url] if url else [])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, env=os.environ.copy())
    text = (proc.stdout + proc.stderr).strip().splitlines()
    return proc.returncode == 0, (text[-1] if text else "")


def books_and_audit(report: DrillReport, url: str | None = None) -> None:
    """`kredete db check-balances` and `kredete db verify-audit` pass (run side by side: both only read)."""
    from concurrent.futures import ThreadPoolExecutor

    whats = ("check-balances", "verify-audit")
    with ThreadPoolExecutor(len(whats)) as pool:
        results = list(pool.map(lambda what: cli("db", what, url=url), whats))
    for what, (ok, line) in zip(whats, results, strict=True):
        report.lines.append(f"db {what}: {'ok' if ok else 'FAILED'}: {line}")
        if not ok:
            report.failures.append(f"db {what} failed: {line}")


def books_audit_and_mcp(report: DrillReport, survivor: Ack | None) -> tuple[float, float]:
    """`books_and_audit` and, for an acknowledged payment `survivor`, `mcp_answers`, side by side: the MCP
    server's start (mostly imports) overlaps the two read-only checks. Returns the seconds each took."""
    from concurrent.futures import ThreadPoolExecutor

    def timed(fn: Callable[[], None]) -> float:
        t0 = time.monotonic()
        fn()
        return time.monotonic() - t0

    with ThreadPoolExecutor(1) as pool:
        mcp = pool.submit(timed, lambda: mcp_answers(report, survivor.user_id, survivor.key)) if survivor else None
        books_s = timed(lambda: books_and_audit(report))
        mcp_s = mcp.result() if mcp is not None else 0.0
    return books_s, mcp_s


def drill_users(n: int, seed: int = 42) -> list[UUID]:
    """The first `n` users of `kredete seed` (deterministic ids); refuses when they are not in the database."""
    from kredete.seed.people import user_id_for

    users = [user_id_for(seed, i) for i in range(n)]

    async def check() -> None:
        from config.settings import resolve
        from stores.postgres.users import UserRepository
        from stores.registry import build_postgres
        from stores.scope import RowScope

        store = build_postgres(resolve())
        await store.connect()
        try:
            repo = UserRepository(store, replica_reads=False)
            await repo.get_profile(RowScope.users(users[-1]), users[-1])
        finally:
            await store.close()

    try:
        asyncio.run(check())
    except Exception as exc:
        raise StackError(f"the drill writes as the first {n} seeded users, and they are not there "
                         f"({type(exc).__name__}): run `kredete seed --users {n}` first") from exc
    return users


def mcp_answers(report: DrillReport, user: UUID, transaction_id: str) -> None:
    """Start the MCP server as a real process and read one acknowledged transaction through it."""
    from config.settings import resolve
    from evals.harness import OFFLINE_ENV, error_text, http_server, http_session, token_for

    token = token_for(resolve(), "customer", user=user)

    async def call(url: str) -> str:
        async with http_session(url, token) as session:
            result = await session.call_tool("get_transaction", {"transaction_id": transaction_id})
            if result.is_error:
                return "error: " + error_text(result)[:200]
            return json.dumps(result.structured_content, default=str)

    text = "error: not called"
    try:
        with http_server({**os.environ, **OFFLINE_ENV}, log_name="drill-mcp-server") as url:
            # The first calls may meet stores still reconnecting after the recovery: a few tries, 30 s at most.
            deadline = time.monotonic() + 30
            while True:
                try:
                    text = asyncio.run(call(url))
                except Exception as exc:
                    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
                        exc = exc.exceptions[0]
                    text = f"error: {type(exc).__name__}: {str(exc)[:200]}"
                if (transaction_id in text and not text.startswith("error")) or time.monotonic() > deadline:
                    break
                time.sleep(1)
    except Exception as exc:
        text = f"error: {type(exc).__name__}: {str(exc)[:200]}"
    ok = transaction_id in text and not text.startswith("error")
    report.lines.append(f"MCP server: {'answers' if ok else 'FAILED'} (get_transaction of an acknowledged write)")
    if not ok:
        report.failures.append(f"MCP server did not answer: {text[:300]}")


def print_report(report: DrillReport, console: Console) -> None:
    for line in report.lines:
        console.print(line, highlight=False, markup=False)
    for f in report.failures:
        console.print(f"FAILED: {f}", style="red", highlight=False, markup=False)
