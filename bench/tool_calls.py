"""Tool-call benchmark, one run: MCP over HTTP vs the same query made directly, and redaction throughput.

    python -m bench.tool_calls [--calls 300] [--concurrency 8] [--users 200] [--fresh]

For `get_transaction` and `search_transactions` (as a support agent, narrowed to one user), three paths
answer the same question with the same SQL shape against the same replica, as the agent role:

  mcp         SDK ClientSession -> streamable HTTP -> `kredete serve` (authn, authz, rate limit, validation,
              query, PII redaction with the users' known names, output budget, hash-chained audit row)
  repository  `stores.postgres.TransactionRepository` in this process (pool, scope clause, pydantic models)
  raw         a bare asyncpg fetch of the same statements (no models)

Each path runs `--calls` sequential calls (p50/p99, calls/s = 1/mean) and a concurrent run with
`--concurrency` workers (calls/s from the wall time; MCP: one session per worker). The ratio MCP/direct is
reported per path. Redaction throughput: `redact_value` with the support_agent policy over every seeded
transaction and credit report, dumped as dicts. The server limits 60 calls/min per principal and tool, so
the MCP client rotates to a fresh token subject every 50 calls (no server change).

Data: its own dataset (`kredete_bench` Postgres/Mongo DBs, `kredete-bench` index prefix), built through the
CLI on first use and reused after. Results: bench/results/tool_calls.json and a rich table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import UUID

from rich.console import Console
from rich.table import Table

from evals.harness import Dataset, RotatingTokens, http_server, http_session, latency_summary

RESULTS = Path(__file__).parent / "results" / "tool_calls.json"
TOOLS = ("get_transaction", "search_transactions")
ROTATE_EVERY = 50
WARMUP = 10
console = Console(width=None if sys.stdout.isatty() else 140)


# --- the same statements the repository builds, written out -------------------------------------------

def _raw_sql() -> dict[str, str]:
    from stores.postgres.transactions import DETAIL_COLUMNS, SUMMARY_COLUMNS

    return {
        "get": f"SELECT {DETAIL_COLUMNS} FROM transactions t WHERE t.id = $1::uuid AND TRUE",
        "entries": "SELECT line_no, wallet_id, currency, direction, amount_minor, entry_type FROM ledger_entries "
                   "WHERE transaction_id = $1 AND created_at = $2 ORDER BY line_no",
        "refunds": "SELECT id, amount_minor, currency, status, reason, created_at, refund_transaction_id FROM "
                   "refunds WHERE transaction_id = $1 ORDER BY created_at, id",
        "search": f"SELECT {SUMMARY_COLUMNS} FROM transactions t WHERE t.user_id = ANY($1::uuid[]) "
                  "ORDER BY t.created_at DESC, t.id DESC LIMIT $2",
    }


@contextlib.asynccontextmanager
async def prepared_get_transaction(settings: Any) -> AsyncIterator[Callable[[Any], Awaitable[None]]]:
    """The floor of `get_transaction` (bench.mcp_scale): its three statements on one bare asyncpg connection of
    the agent replica, prepared by asyncpg's statement cache; yields `call(transaction_id)`."""
    import asyncpg

    sql = _raw_sql()
    pool = await asyncpg.create_pool(settings.postgres_agent_replica_url.get_secret_value(), min_size=1, max_size=1)
    try:
        async def call(tx: Any) -> None:
            async with pool.acquire() as conn:
                row = await conn.fetchrow(sql["get"], tx)
                await conn.fetch(sql["entries"], row["id"], row["created_at"])
                await conn.fetch(sql["refunds"], row["id"])

        yield call
    finally:
        await pool.close()


async def _sample(settings: Any, n: int, seed: int = 11) -> tuple[list[UUID], list[UUID]]:
    from stores.postgres.bulk_load import direct_connection

    async with direct_connection(settings.postgres_url.get_secret_value()) as conn:
        txs = [r["id"] for r in await conn.fetch("SELECT id FROM transactions ORDER BY id")]
        users = [r["user_id"] for r in await conn.fetch(
            "SELECT DISTINCT user_id FROM transactions ORDER BY user_id")]
    rng = random.Random(seed)
    return [rng.choice(txs) for _ in range(n)], [rng.choice(users) for _ in range(n)]


def _args(tool: str, i: int, txs: list[UUID], users: list[UUID]) -> dict[str, Any]:
    if tool == "get_transaction":
        return {"transaction_id": str(txs[i % len(txs)])}
    return {"user_id": str(users[i % len(users)]), "limit": 20}


async def _timed(n: int, call: Callable[[int], Awaitable[Any]], offset: int = 0) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        await call(offset + i)
        out.append((time.perf_counter() - t) * 1000)
    return out


async def _concurrent(n: int, workers: int, worker: Callable[[int, int], Awaitable[list[float]]]) -> dict[str, Any]:
    """`workers` coroutines share `n` calls; calls/s from the wall time."""
    per = [n // workers + (1 if w < n % workers else 0) for w in range(workers)]
    t = time.perf_counter()
    parts = await asyncio.gather(*(worker(w, k) for w, k in enumerate(per)))
    wall = time.perf_counter() - t
    return latency_summary([x for p in parts for x in p], wall)


def _sequential(ms: list[float]) -> dict[str, Any]:
    return latency_summary(ms)  # calls/s = 1 / mean latency, one call in flight


# --- MCP over HTTP ----------------------------------------------------------------------------------

async def bench_mcp(url: str, settings: Any, tool: str, n: int, workers: int, txs: list[UUID],
                    users: list[UUID]) -> dict[str, Any]:
    from evals.harness import error_text

    tokens = RotatingTokens(settings, "support_agent", every=ROTATE_EVERY, prefix=f"bench-{tool}")
    errors: list[str] = []

    async def run(count: int, offset: int) -> list[float]:
        """`count` calls in sessions of ROTATE_EVERY calls, each with a fresh subject; session setup untimed."""
        ms: list[float] = []
        done = 0
        while done < count:
            batch = min(ROTATE_EVERY, count - done)
            async with http_session(url, tokens.next()) as s:

                async def call(i: int, s: Any = s) -> None:
                    res = await s.call_tool(tool, _args(tool, i, txs, users))
                    if res.is_error:
                        errors.append(error_text(res))

                ms += await _timed(batch, call, offset + done)
            done += batch
        return ms

    await run(WARMUP, 10_000)
    seq = _sequential(await run(n, 0))
    conc = await _concurrent(n, workers, lambda w, k: run(k, 1000 * (w + 1)))
    if errors:
        raise RuntimeError(f"{len(errors)} MCP calls failed, e.g. {errors[0]}")
    return {"sequential": seq, "concurrent": conc}


# --- direct: repository and raw asyncpg -------------------------------------------------------------

async def bench_repository(settings: Any, tool: str, n: int, workers: int, txs: list[UUID],
                           users: list[UUID]) -> dict[str, Any]:
    from stores.postgres import TransactionRepository
    from stores.registry import build_postgres
    from stores.scope import RowScope

    pg = build_postgres(settings, role="agent")  # the server's role and pool size, reads on the replica
    await pg.connect()
    try:
        repo = TransactionRepository(pg)
        everyone = RowScope.everyone()

        async def call(i: int) -> None:
            if tool == "get_transaction":
                await repo.get(everyone, txs[i % len(txs)])
            else:
                await repo.search(RowScope.users(users[i % len(users)]), limit=20)

        await _timed(WARMUP, call, 10_000)
        seq = _sequential(await _timed(n, call))
        conc = await _concurrent(n, workers, lambda w, k: _timed(k, call, 1000 * (w + 1)))
    finally:
        await pg.close()
    return {"sequential": seq, "concurrent": conc}


async def bench_raw(settings: Any, tool: str, n: int, workers: int, txs: list[UUID],
                    users: list[UUID]) -> dict[str, Any]:
    # The floor this benchmark measures the other paths against: a bare driver pool and prepared statements.
    import asyncpg

    sql = _raw_sql()
    url = settings.postgres_agent_replica_url.get_secret_value()
    pool = await asyncpg.create_pool(url, min_size=workers, max_size=workers)
    try:
        async def call(i: int) -> None:
            async with pool.acquire() as conn:
                if tool == "get_transaction":
                    row = await conn.fetchrow(sql["get"], txs[i % len(txs)])
                    await conn.fetch(sql["entries"], row["id"], row["created_at"])
                    await conn.fetch(sql["refunds"], row["id"])
                else:
                    await conn.fetch(sql["search"], [users[i % len(users)]], 21)

        await _timed(WARMUP, call, 10_000)
        seq = _sequential(await _timed(n, call))
        conc = await _concurrent(n, workers, lambda w, k: _timed(k, call, 1000 * (w + 1)))
    finally:
        await pool.close()
    return {"sequential": seq, "concurrent": conc}


# --- redaction throughput ---------------------------------------------------------------------------

async def _documents(settings: Any) -> tuple[list[tuple[str, dict[str, Any], UUID | None]], dict[UUID, list[str]]]:
    """(kind, document, owner) for every seeded transaction and credit report, plus the owners' known names."""
    from stores.crypto import FieldCipher
    from stores.mongo.client import MongoStore
    from stores.mongo.scans import CreditStoreScan
    from stores.postgres.bulk_load import direct_connection
    from stores.postgres.transactions import DETAIL_COLUMNS
    from stores.postgres.users import UserRepository
    from stores.registry import build_postgres

    def plain(d: Any) -> Any:
        return json.loads(json.dumps(d, default=str))

    async with direct_connection(settings.postgres_url.get_secret_value()) as conn:
        rows = await conn.fetch(f"SELECT {DETAIL_COLUMNS} FROM transactions t ORDER BY t.created_at, t.id")
    docs: list[tuple[str, dict[str, Any], UUID | None]] = [("transaction", plain(dict(r)), r["user_id"])
                                                           for r in rows]
    mongo = await MongoStore(settings.mongo_url.get_secret_value(), settings.mongo_db).connect()
    try:
        async for page in CreditStoreScan(mongo).pages("credit_reports", batch=500):
            for d in page:
                d.pop("_id", None)
                uid = d.get("user_id")
                docs.append(("credit_report", plain(d), UUID(uid) if uid else None))
    finally:
        await mongo.close()
    pg = build_postgres(settings, role="service")
    await pg.connect()
    try:
        users = UserRepository(pg, cipher=FieldCipher.from_settings(settings))
        owners = sorted({o for _, _, o in docs if o is not None})
        known = await users.known_pii(owners)
    finally:
        await pg.close()
    return docs, {u: v.get("names", []) for u, v in known.items()}


def bench_redaction(docs: list[tuple[str, dict[str, Any], UUID | None]], names: dict[UUID, list[str]],
                    repeat: int = 3) -> dict[str, Any]:
    from guards.redaction import redact_value, role_policy

    policy = role_policy("support_agent")
    out: dict[str, Any] = {}
    for kind in ("transaction", "credit_report", "all"):
        subset = [d for d in docs if kind in ("all", d[0])]
        size = sum(len(json.dumps(d).encode()) for _, d, _ in subset)
        for variant, with_names in (("recognisers", False), ("with_known_names", True)):
            best, findings = float("inf"), 0
            for _ in range(repeat):  # best of `repeat`: the steady-state cost, not the first-run warm-up
                findings = 0
                t = time.perf_counter()
                for _, d, owner in subset:
                    kw = {"known_names": names.get(owner, [])} if with_names and owner else {}
                    _, counts = redact_value(d, policy, **kw)
                    findings += sum(counts.values())
                best = min(best, time.perf_counter() - t)
            out[f"{kind}/{variant}"] = {"documents": len(subset), "bytes": size, "seconds": round(best, 4),
                                        "docs_per_s": round(len(subset) / best, 1),
                                        "mb_per_s": round(size / best / 1e6, 3), "findings": findings}
    return out


# --- the run ----------------------------------------------------------------------------------------

def _ratios(res: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tool in TOOLS:
        m = res[tool]["mcp"]
        for base in ("repository", "raw"):
            b = res[tool][base]
            out[f"{tool}/{base}"] = {
                "p50": round(m["sequential"]["p50_ms"] / b["sequential"]["p50_ms"], 2),
                "p99": round(m["sequential"]["p99_ms"] / b["sequential"]["p99_ms"], 2),
                "throughput_concurrent": round(m["concurrent"]["calls_per_s"] / b["concurrent"]["calls_per_s"], 3),
            }
    return out


def run(calls: int, workers: int, users: int, fresh: bool) -> dict[str, Any]:
    ds = Dataset("bench", users=users, seed=42)
    with console.status("preparing the bench dataset"):
        ds.prepare(fresh=fresh, log=lambda m: console.log(m))
    settings = ds.settings()
    txs, sample_users = asyncio.run(_sample(settings, 500))
    res: dict[str, Any] = {"calls": calls, "concurrency": workers, "users": users, "rotate_token_every": ROTATE_EVERY,
                           "host": {"python": platform.python_version(), "machine": platform.machine()}}
    started = time.perf_counter()
    with http_server(ds.env, log_name="bench-http-server") as url:
        for tool in TOOLS:
            res[tool] = {}
            with console.status(f"{tool}: MCP over HTTP"):
                res[tool]["mcp"] = asyncio.run(bench_mcp(url, settings, tool, calls, workers, txs, sample_users))
            with console.status(f"{tool}: repository"):
                res[tool]["repository"] = asyncio.run(bench_repository(settings, tool, calls, workers, txs,
                                                                       sample_users))
            with console.status(f"{tool}: raw asyncpg"):
                res[tool]["raw"] = asyncio.run(bench_raw(settings, tool, calls, workers, txs, sample_users))
    res["ratio_mcp_over_direct"] = _ratios(res)
    with console.status("redaction throughput"):
        docs, names = asyncio.run(_documents(settings))
        res["redaction"] = bench_redaction(docs, names)
    res["seconds"] = round(time.perf_counter() - started, 1)
    return res


def show(res: dict[str, Any]) -> None:
    t = Table(title=f"tool calls: MCP over HTTP vs direct ({res['calls']} sequential calls, "
                    f"concurrent c={res['concurrency']}, {res['users']} seeded users)")
    for col in ("tool", "path", "p50 ms", "p99 ms", "calls/s seq", "calls/s conc", "MCP/direct p50",
                "MCP/direct calls/s"):
        t.add_column(col, justify="left" if col in ("tool", "path") else "right")
    for tool in TOOLS:
        for path in ("mcp", "repository", "raw"):
            r = res[tool][path]
            ratio = res["ratio_mcp_over_direct"].get(f"{tool}/{path}")
            t.add_row(tool, path, f"{r['sequential']['p50_ms']:.2f}", f"{r['sequential']['p99_ms']:.2f}",
                      f"{r['sequential']['calls_per_s']:.0f}", f"{r['concurrent']['calls_per_s']:.0f}",
                      f"{ratio['p50']:.1f}x" if ratio else "-",
                      f"{ratio['throughput_concurrent']:.3f}" if ratio else "-")
    console.print(t)
    r = Table(title="redaction throughput (redact_value, support_agent policy)")
    for col in ("documents", "variant", "n", "MB", "docs/s", "MB/s", "findings"):
        r.add_column(col, justify="left" if col in ("documents", "variant") else "right")
    for key, v in res["redaction"].items():
        kind, variant = key.split("/")
        r.add_row(kind, variant, str(v["documents"]), f"{v['bytes'] / 1e6:.2f}", f"{v['docs_per_s']:.0f}",
                  f"{v['mb_per_s']:.2f}", str(v["findings"]))
    console.print(r)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=300, help="sequential calls per tool and path")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--users", type=int, default=200, help="seeded users in the bench dataset")
    ap.add_argument("--fresh", action="store_true", help="rebuild the bench dataset even if it exists")
    args = ap.parse_args()
    res = run(args.calls, args.concurrency, args.users, args.fresh)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    show(res)


if __name__ == "__main__":
    main()
