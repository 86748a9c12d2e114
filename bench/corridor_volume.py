"""`corridor_volume`'s query at growing sizes: the corridor-day rollup (migration 0015) against the scan of
`transactions` it replaced, same arguments, same database, interleaved call by call.

    python -m bench.corridor_volume [--sizes 1000 20000] [--calls 40] [--out bench/results/corridor_volume.json]

Per size N a PostgreSQL database `kredete_cv<N>` with the payments of N users only (`kredete seed --users N
--skip-mongo --skip-documents`, seed 42; reused when it already holds N users). Each call draws what
`bench.scale_mcp` gives the tool: a window of 7, 30 or 90 days starting in the seed's range, half of them for
one corridor; the repository runs it as the MCP server does (`AnalyticsRepository.volume_by_corridor`, day
cells, k = 5, read from a replica), once from the rollup and once by the scan (`from_rollup=False`), and the two
answers are checked equal. Latency is the repository call's, in process (no MCP transport, no guards). Then
EXPLAIN ANALYZE of both for one fixed 90-day window: execution time and pages touched, as the database sees it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from config.paths import REPO_ROOT
from config.settings import Settings, resolve
from evals.harness import KREDETE, OFFLINE_ENV, latency_summary

RESULTS = Path(__file__).parent / "results" / "corridor_volume.json"
SEED = 42


def _db(users: int) -> str:
    return f"kredete_cv{users}"


async def _users_in(settings: Settings) -> int | None:
    from stores.postgres.bulk_load import direct_connection

    try:
        async with direct_connection(settings.postgres_url.get_secret_value()) as conn:
            return await conn.fetchval("SELECT count(*) FROM users")
    except Exception:  # no such database (or not migrated yet)
        return None


def prepare(users: int) -> Settings:
    """The size's database, seeded unless it already holds `users` users; migrated to this commit."""
    from stores.postgres.databases import recreate_database

    settings = resolve(Settings(postgres_db=_db(users)))
    env = {**os.environ, "KREDETE_POSTGRES_DB": _db(users), **OFFLINE_ENV}
    if asyncio.run(_users_in(settings)) != users:
        asyncio.run(recreate_database(resolve().postgres_url.get_secret_value(), _db(users)))
        subprocess.run([KREDETE, "db", "migrate"], env=env, check=True, capture_output=True, cwd=REPO_ROOT)
        subprocess.run([KREDETE, "seed", "--users", str(users), "--seed", str(SEED), "--skip-mongo",
                        "--skip-documents"], env=env, check=True, capture_output=True, cwd=REPO_ROOT)
    subprocess.run([KREDETE, "db", "migrate"], env=env, check=True, capture_output=True, cwd=REPO_ROOT)
    return settings


async def measure(settings: Settings, calls: int) -> dict[str, Any]:
    from stores.postgres import AnalyticsRepository
    from stores.registry import connect_agent

    stores = await connect_agent(settings)
    try:
        repo = AnalyticsRepository(stores.postgres)
        async with stores.postgres.connection() as conn:
            corridors = [r["id"] for r in await conn.fetch("SELECT id FROM corridors WHERE enabled ORDER BY id")]
            transactions = await conn.fetchval("SELECT count(*) FROM transactions")
        rng = random.Random(SEED)
        ms: dict[str, list[float]] = {"rollup": [], "scan": []}
        rows = 0
        for i in range(calls + 3):
            start = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=rng.randrange(0, 600))
            args = (start, start + timedelta(days=rng.choice((7, 30, 90))))
            kw = {"granularity": "day", "min_cell_size": 5,
                  "corridor": rng.choice(corridors) if rng.random() < 0.5 else None}
            answers = {}
            for source in (("rollup", "scan") if i % 2 else ("scan", "rollup")):
                t0 = time.perf_counter()
                answers[source] = await repo.volume_by_corridor(*args, from_rollup=source == "rollup", **kw)
                if i >= 3:  # warm-up
                    ms[source].append((time.perf_counter() - t0) * 1000)
            a, b = answers["rollup"], answers["scan"]
            if (a.items, a.suppressed_cells, a.truncated) != (b.items, b.suppressed_cells, b.truncated):
                raise SystemExit(f"the rollup and the scan differ for {args} {kw}")
            rows += len(a.items)
        return {"transactions": transactions, "calls": calls, "rows_shown": rows,
                **{k: latency_summary(v) for k, v in ms.items()}, "explain_90_days": await explain(stores.postgres)}
    finally:
        await stores.close()


async def explain(store: Any) -> dict[str, Any]:
    """EXPLAIN ANALYZE of both queries for one fixed window (90 days from 2026-03-01, every corridor): the
    database's own time and the pages it touched, without the client and its load."""
    from stores.postgres import AnalyticsRepository

    out = {}
    start = datetime(2026, 3, 1, tzinfo=UTC)
    for source in ("scan", "rollup"):
        query, values, _ = AnalyticsRepository.corridor_query(start, start + timedelta(days=90),
                                                              from_rollup=source == "rollup")
        async with store.connection() as conn:
            plan = json.loads(await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {query}", *values))[0]
        top = plan["Plan"]
        out[source] = {"execution_ms": plan["Execution Time"],
                       "pages": top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 20000])
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    out: dict[str, Any] = {"run": datetime.now(UTC).isoformat(timespec="seconds"),
                           "load_avg_start": os.getloadavg()[0], "sizes": {}}
    for n in args.sizes:
        out["sizes"][str(n)] = asyncio.run(measure(prepare(n), args.calls))
        r = out["sizes"][str(n)]
        print(f"{n:>7} users, {r['transactions']:>8} transactions: rollup p50 {r['rollup']['p50_ms']:.2f} ms "
              f"p99 {r['rollup']['p99_ms']:.2f} ms | scan p50 {r['scan']['p50_ms']:.2f} ms "
              f"p99 {r['scan']['p99_ms']:.2f} ms; 90-day EXPLAIN ANALYZE: {r['explain_90_days']}", flush=True)
    out["load_avg_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
