"""Where a call's time goes inside our server: wall time per guard stage, beside the client's latency.

    python -m bench.call_stages [--calls 300] [--tool get_transaction get_dispute]
                                [--out bench/results/call_stages.json]

A support agent makes `--calls` sequential calls of each tool over stdio (after a warm-up) to our server run by
this module (`--serve`: the guards' stage functions wrapped with timers, then `server.main()`, the code
`kredete serve` runs). Per call the server times, in wall milliseconds: the whole guard middleware
(`middleware_total`), and inside it authentication, the rate limit (one Redis round trip), argument validation,
the tool's store query, output redaction (with the known-PII lookup), delimiting, the token budget, the output
schema check and the audit row (awaiting its group commit). The client's p50 minus the middleware's is what the
MCP SDK, the stdio transport and the Python client take around it (`bench.bare_sdk` measures that alone).
Stage p50s do not add up to the total's p50 (each is its own median); `rest` is the median of the per-call
remainder (scope, SDK tool dispatch inside the middleware, rendering, the trace hand-off, metrics).
Results: `--out` (JSON) and a table.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextvars
import functools
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STAGES_FILE = "KREDETE_BENCH_STAGES_FILE"
#: Stage name: (module, owner attribute or "", function name). Wrapped where the guards look them up.
STAGES = {
    "authenticate": ("guards.gate", "Gate", "authenticate"),
    "rate_limit": ("guards.gate", "Gate", "rate_limit"),
    "validate": ("guards.middleware", "", "_validate"),
    "query": ("stores.postgres.transactions", "TransactionRepository", "get"),
    "query_dispute": ("stores.mongo.credit", "DisputeRepository", "get"),
    "redact": ("guards.gate", "Gate", "redact"),
    "delimit": ("guards.pipeline", "", "wrap_free_text"),
    "budget": ("guards.pipeline", "", "fit_to_budget"),
    "output_check": ("guards.pipeline", "", "_check_output"),
    "audit": ("guards.gate", "Gate", "audit"),
}


# --- the server side ----------------------------------------------------------------------------------

def _instrument(out: Path) -> None:
    import importlib

    from guards import middleware

    current: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar("bench_stages", default=None)
    calls: list[dict[str, float]] = []

    def add(label: str, started: float) -> None:
        d = current.get()
        if d is not None:
            d[label] = d.get(label, 0.0) + (time.perf_counter() - started) * 1000

    def wrap(label: str, fn: Any) -> Any:
        if asyncio.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def timed_async(*a: Any, **k: Any) -> Any:
                t = time.perf_counter()
                try:
                    return await fn(*a, **k)
                finally:
                    add(label, t)
            return timed_async

        @functools.wraps(fn)
        def timed(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                add(label, t)
        return timed

    for label, (module, owner, name) in STAGES.items():
        target = importlib.import_module(module)
        if owner:
            target = getattr(target, owner)
        setattr(target, name, wrap(label.removesuffix("_dispute"), getattr(target, name)))

    plain = middleware.GuardMiddleware.__call__

    async def guarded(self: Any, ctx: Any, call_next: Any) -> Any:
        if ctx.method != "tools/call":
            return await plain(self, ctx, call_next)
        d: dict[str, float] = {}
        token = current.set(d)
        t = time.perf_counter()
        try:
            return await plain(self, ctx, call_next)
        finally:
            d["middleware_total"] = (time.perf_counter() - t) * 1000
            current.reset(token)
            calls.append(d)
            if len(calls) % 25 == 0:  # also when the client's shutdown kills the server before it exits
                dump()

    def dump() -> None:
        out.write_text(json.dumps(calls))

    middleware.GuardMiddleware.__call__ = guarded
    atexit.register(dump)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # atexit runs on the client's terminate too


def serve() -> None:
    _instrument(Path(os.environ[STAGES_FILE]))
    import server

    server.main()


# --- the client side ----------------------------------------------------------------------------------

def _summary(client_ms: list[float], calls: list[dict[str, float]]) -> dict[str, Any]:
    from evals.harness import latency_summary

    stages = [k for k in (*dict.fromkeys(s.removesuffix("_dispute") for s in STAGES), "middleware_total")
              if any(k in c for c in calls)]
    rest = [c["middleware_total"] - sum(v for k, v in c.items() if k != "middleware_total") for c in calls]
    out = {"client": latency_summary(client_ms),
           "server_p50_ms": {k: round(statistics.median(c.get(k, 0.0) for c in calls), 3) for k in stages},
           "rest_p50_ms": round(statistics.median(rest), 3), "server_calls": len(calls)}
    out["client_minus_middleware_p50_ms"] = round(out["client"]["p50_ms"] - out["server_p50_ms"]["middleware_total"],
                                                  3)
    return out


def run_tool(bench: Any, tool: str, calls: int) -> dict[str, Any]:
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    from bench.profile_calls import WARMUP, _drive, call_args
    from config.paths import REPO_ROOT
    from evals.harness import token_for

    args = call_args(tool, "support_agent", bench.users, bench.tx, bench.disputes)
    with tempfile.TemporaryDirectory() as tmp:
        stages = Path(tmp) / "stages.json"
        env = {**bench.env, "KREDETE_TOKEN": token_for(bench.settings, "support_agent", subject="bench-stages"),
               STAGES_FILE: str(stages)}
        params = StdioServerParameters(command=sys.executable, args=["-m", "bench.call_stages", "--serve"], env=env,
                                       cwd=str(REPO_ROOT))

        async def go() -> list[float]:
            with tempfile.TemporaryFile("w+") as errlog:
                async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as s:
                    await s.initialize()
                    return await _drive({"": s}, tool, args, calls)

        client_ms = asyncio.run(go())
        deadline = time.monotonic() + 30
        while not stages.exists() and time.monotonic() < deadline:  # written when the server exits
            time.sleep(0.1)
        recorded = json.loads(stages.read_text())
    return _summary(client_ms, recorded[WARMUP:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--users", type=int, default=200, help="seeded users in the bench dataset")
    ap.add_argument("--tool", nargs="+", default=["get_transaction", "get_dispute"],
                    choices=["get_transaction", "get_dispute"])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "call_stages.json")
    args = ap.parse_args()
    if args.serve:
        serve()
        return
    from bench.profile_calls import Bench, git_head

    bench = Bench.prepare(args.users)
    res: dict[str, Any] = {"git": git_head(), "transport": "stdio", "role": "support_agent", "calls": args.calls,
                           "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "load_avg_start": os.getloadavg()}
    for tool in args.tool:
        res[tool] = run_tool(bench, tool, args.calls)
        print(tool, json.dumps(res[tool], indent=1))
    res["load_avg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
