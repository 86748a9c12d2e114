"""Tracing overhead on the MCP call path, one run: the same calls against two servers on one dataset, one with
AI traces on (every call an observation, retrievals as children, written in the background) and one with them
off (`KREDETE_TRACES_ENABLED=false`), interleaved call by call so machine load falls on both alike.

    python -m bench.traces [--calls 200] [--users 40] [--fresh]

Tools (as a customer, client-measured over streamable HTTP): get_wallet_balances, search_transactions,
search_knowledge (a retrieval: a child observation and a model prediction too). Reports p50/p95 per tool and
side, the p50 overhead (on / off - 1) per tool and over all calls, and what the traced server's recorder did
(observations written, dropped per reason, from its /metrics and the credit store). Goal: p50 overhead < 5%.

Data: the traces tests' dataset (`kredete_traces`, 12 users), built through the CLI on first use and reused after.
Results: bench/results/traces.json and a rich table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from evals.harness import Dataset, http_server, http_session, latency_summary, token_for

RESULTS = Path(__file__).parent / "results" / "traces.json"
EXEMPT = "bench-traces-exempt"
WARMUP = 10
CALLS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("get_wallet_balances", {}),
    ("search_transactions", {"limit": 20}),
    ("search_knowledge", {"query": "how long does a transfer to Ghana take", "k": 5}),
)
console = Console(width=None if sys.stdout.isatty() else 140)


async def customer(settings: Any) -> Any:
    from stores.registry import connect

    stores = await connect(("postgres",), settings=settings)
    try:
        async with stores.postgres.connection() as conn:
            return await conn.fetchval("SELECT user_id FROM wallets ORDER BY user_id LIMIT 1")
    finally:
        await stores.close()


async def measure(urls: dict[str, str], token: str, calls: int) -> dict[str, dict[str, list[float]]]:
    """{side: {tool: [ms...]}}: per round, every tool on both sides, the side that goes first alternating."""
    out: dict[str, dict[str, list[float]]] = {side: {t: [] for t, _ in CALLS} for side in urls}
    conv = f"bench-{uuid.uuid4().hex[:10]}"
    async with http_session(urls["on"], token) as on, http_session(urls["off"], token) as off:
        sessions = {"on": on, "off": off}
        for i in range(WARMUP + calls):
            order = ("on", "off") if i % 2 == 0 else ("off", "on")
            for tool, args in CALLS:
                for side in order:
                    meta = {"kredete/conversation_id": conv}
                    t = time.perf_counter()
                    res = await sessions[side].call_tool(tool, args, meta=meta)
                    ms = (time.perf_counter() - t) * 1000
                    if res.is_error:
                        raise RuntimeError(f"{tool} failed on the {side} server: {res.content}")
                    if i >= WARMUP:
                        out[side][tool].append(ms)
    return out


async def recorder_facts(url: str, settings: Any, started: datetime) -> dict[str, Any]:
    import httpx

    from stores.mongo.client import MongoStore

    async with httpx.AsyncClient(timeout=10) as client:
        metrics = (await client.get(url.removesuffix("/mcp") + "/metrics")).text
    dropped = {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^kredete_trace_observations_dropped_total\{reason="([a-z_]+)"\} ([0-9.e+]+)$', metrics, re.MULTILINE)}
    gauges = {name: float(v) for name, v in re.findall(r"^(kredete_ai_log_[a-z]+|kredete_trace_queue) ([0-9.e+]+)$",
                                                         metrics, re.MULTILINE)}
    store = await MongoStore(settings.mongo_url.get_secret_value(), settings.mongo_db).connect()
    try:
        written = await store.db.trace_observations.count_documents({"started_at": {"$gte": started}})
    finally:
        await store.close()
    return {"observations_written": written, "dropped": dropped, "logger": gauges}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=200, help="Rounds (each: every tool on both servers).")
    ap.add_argument("--users", type=int, default=12)
    ap.add_argument("--fresh", action="store_true")
    a = ap.parse_args()
    # The traces tests' dataset at its default size (reused when it exists: nothing to seed or ingest).
    ds = Dataset("traces", users=a.users, seed=16, ingest=("kb",))
    with console.status("preparing the dataset"):
        ds.prepare(fresh=a.fresh, log=console.log)
    settings = ds.settings()
    user = asyncio.run(customer(settings))
    token = token_for(settings, "customer", user=user, subject=EXEMPT)
    base = {**ds.env, "KREDETE_RATE_LIMIT_EXEMPT_SUBJECTS": EXEMPT}
    started = datetime.now(UTC)
    on_env, off_env = {**base, "KREDETE_TRACES_ENABLED": "true"}, {**base, "KREDETE_TRACES_ENABLED": "false"}
    with http_server(on_env, log_name="bench-traces-on", timeout_s=300) as on_url, \
            http_server(off_env, log_name="bench-traces-off", timeout_s=300) as off_url:
        with console.status(f"{a.calls} rounds x {len(CALLS)} tools x 2 servers"):
            t0 = time.perf_counter()
            lat = asyncio.run(measure({"on": on_url, "off": off_url}, token, a.calls))
            wall = time.perf_counter() - t0
        time.sleep(2)  # let the recorder drain before reading its counters
        facts = asyncio.run(recorder_facts(on_url, settings, started))
    tools: dict[str, Any] = {}
    for tool, _ in CALLS:
        on, off = latency_summary(lat["on"][tool]), latency_summary(lat["off"][tool])
        tools[tool] = {"on": on, "off": off, "p50_overhead_pct": round((on["p50_ms"] / off["p50_ms"] - 1) * 100, 2)}
    all_on = latency_summary([x for v in lat["on"].values() for x in v])
    all_off = latency_summary([x for v in lat["off"].values() for x in v])
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"), "host": platform.node(),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPUs (shared)",
        "dataset": ds.db, "rounds": a.calls, "calls_per_side": a.calls * len(CALLS), "wall_s": round(wall, 1),
        "tools": tools, "all": {"on": all_on, "off": all_off,
                                "p50_overhead_pct": round((all_on["p50_ms"] / all_off["p50_ms"] - 1) * 100, 2)},
        "recorder": facts, "goal": "p50 overhead < 5%",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    t = Table(title=f"tracing overhead ({a.calls} rounds, interleaved)")
    for col in ("tool", "p50 off ms", "p50 on ms", "p50 overhead", "p95 off ms", "p95 on ms"):
        t.add_column(col)
    for name, r in [*tools.items(), ("all calls", result["all"])]:
        t.add_row(name, f"{r['off']['p50_ms']:.1f}", f"{r['on']['p50_ms']:.1f}", f"{r['p50_overhead_pct']:+.1f}%",
                  f"{r['off']['p95_ms']:.1f}", f"{r['on']['p95_ms']:.1f}")
    console.print(t)
    console.print(f"recorder: {facts}")
    console.print(f"results: {RESULTS}")


if __name__ == "__main__":
    main()
