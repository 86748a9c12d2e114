"""The MCP call path against its floor, and horizontal scale: one run.

    python -m bench.mcp_scale [--calls 300] [--clients 8] [--workers 1 2] [--base df7c838] [--rounds 6]

On the bench dataset (the one `bench.tool_calls` builds), as a support agent:

  floor     `get_transaction`'s one statement (the transaction with its ledger lines and refunds) through a
            bare asyncpg pool on the agent replica, prepared (asyncpg's statement cache), one call in flight: p50/p99
  stdio     `kredete serve` over stdio, one session, sequential calls: p50/p99
  http N    `kredete serve --transport http --workers N` for each N, all up at once (with the base below):
            sequential p50/p99 on one session, the paths taking turns call by call; then `--rounds` rounds in
            which each path in turn (order alternating) serves a burst of `--calls` x 2 / rounds calls from
            `--clients` concurrent sessions: calls/s from the bursts' summed wall time (load drifting during
            the run weighs on every path alike)
  base      with `--base REV`: the old call path in the same rounds. REV is checked out as a detached
            `git worktree` under `.local/bench-base/` (removed afterwards) and served, one process, by this
            checkout's Python environment with that tree first on the import path (`KREDETE_LOCAL_DIR` names
            this stack: same database, keys and stores). REV must run on the bench dataset as this commit's
            migrations left it (df7c838, the commit before issue 15's work, does: 0013 and 0014 only add a
            function and privacy tables it does not read).

The rate limits are raised for the run (`KREDETE_RATE_LIMIT_PER_TOOL`/`_PER_PRINCIPAL`; the Redis check still
runs per call). Ratios: p50 over the floor's p50 per transport, p99 over p50, calls/s of N workers over 1.
Results: bench/results/mcp_scale.json and a table. The host's core count and load are recorded: 2 workers can
only scale when the machine has a free core (the client, Postgres and Redis share it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.profile_calls import LIMITS
from config.paths import REPO_ROOT, local_dir
from config.ports import free_port
from evals.harness import KREDETE, Dataset, error_text, http_session, latency_summary, token_for
from evals.listening import listening_process

RESULTS = Path(__file__).parent / "results" / "mcp_scale.json"
WARMUP = 20
TOOL = "get_transaction"
console = Console(width=None if sys.stdout.isatty() else 140)


async def _transactions(settings: Any, n: int = 500) -> list[str]:
    from stores.postgres.bulk_load import direct_connection

    async with direct_connection(settings.postgres_url.get_secret_value()) as conn:
        rows = await conn.fetch("SELECT id FROM transactions ORDER BY id LIMIT $1", n)
    return [str(r["id"]) for r in rows]


async def _sequential(call: Any, n: int) -> list[float]:
    ms = []
    for i in range(WARMUP + n):
        t = time.perf_counter()
        await call(i)
        if i >= WARMUP:
            ms.append((time.perf_counter() - t) * 1000)
    return ms


def _checked(res: Any) -> None:
    if res.is_error:
        raise RuntimeError(f"{TOOL} failed: {error_text(res)}")


# --- the floor ----------------------------------------------------------------------------------------

async def floor(settings: Any, txs: list[str], n: int) -> dict[str, Any]:
    from bench.tool_calls import prepared_get_transaction

    async with prepared_get_transaction(settings) as call:
        return latency_summary(await _sequential(lambda i: call(txs[i % len(txs)]), n))


# --- stdio ----------------------------------------------------------------------------------------------

async def stdio(env: dict[str, str], settings: Any, txs: list[str], n: int) -> dict[str, Any]:
    import tempfile

    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    from config.paths import REPO_ROOT

    token = token_for(settings, "support_agent", subject="bench-scale-stdio")
    params = StdioServerParameters(command=KREDETE, args=["serve"], env={**env, "KREDETE_TOKEN": token},
                                   cwd=str(REPO_ROOT))
    with tempfile.TemporaryFile("w+") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as s:
            await s.initialize()

            async def call(i: int) -> None:
                _checked(await s.call_tool(TOOL, {"transaction_id": txs[i % len(txs)]}))

            return latency_summary(await _sequential(call, n))


# --- HTTP: every server at once, measured in interleaved rounds ------------------------------------------

async def http_interleaved(urls: dict[str, str], settings: Any, txs: list[str], n: int, clients: int,
                           rounds: int) -> dict[str, dict[str, Any]]:
    """Per path (`urls`: label -> MCP URL, every server up at once): sequential latency, the paths taking turns
    call by call; then `rounds` rounds in which each path in turn (the order alternating) serves a burst of
    `2 * n / rounds` calls from `clients` concurrent sessions: calls/s from the bursts' summed wall time. Load
    that drifts during the run weighs on every path alike."""
    token = token_for(settings, "support_agent", subject="bench-scale-http")
    labels = list(urls)
    async with contextlib.AsyncExitStack() as stack:
        sessions = {k: [await stack.enter_async_context(http_session(u, token)) for _ in range(clients)]
                    for k, u in urls.items()}
        seq: dict[str, list[float]] = {k: [] for k in labels}
        for i in range(WARMUP + n):
            for k in labels:
                t = time.perf_counter()
                _checked(await sessions[k][0].call_tool(TOOL, {"transaction_id": txs[i % len(txs)]}))
                if i >= WARMUP:
                    seq[k].append((time.perf_counter() - t) * 1000)
        burst = max(clients, 2 * n // rounds)
        per = [burst // clients + (1 if c < burst % clients else 0) for c in range(clients)]

        async def client(s: Any, c: int, k: int, r: int) -> list[float]:
            ms = []
            for i in range(k):
                t = time.perf_counter()
                _checked(await s.call_tool(TOOL, {"transaction_id": txs[(r * 997 + c * 101 + i) % len(txs)]}))
                ms.append((time.perf_counter() - t) * 1000)
            return ms

        conc: dict[str, list[float]] = {k: [] for k in labels}
        wall = dict.fromkeys(labels, 0.0)
        for r in range(rounds + 1):  # round 0 warms every session's connection (untimed)
            for k in labels if r % 2 else labels[::-1]:
                t = time.perf_counter()
                parts = await asyncio.gather(*(client(sessions[k][c], c, m if r else 2, r)
                                               for c, m in enumerate(per)))
                if r:
                    wall[k] += time.perf_counter() - t
                    conc[k].extend(x for p in parts for x in p)
    return {k: {"sequential": latency_summary(seq[k]), "concurrent": latency_summary(conc[k], wall[k])}
            for k in labels}


def _wait_started(log_name: str, workers: int, timeout_s: float = 300) -> None:
    """With workers, the supervisor's socket accepts before they have started: wait for each one's startup."""
    from config.paths import local_dir

    if workers == 1:  # one process binds its port only after its startup
        return
    log = local_dir() / f"{log_name}.log"
    deadline = time.monotonic() + timeout_s
    while log.read_text(errors="replace").count("Application startup complete") < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{workers} workers did not start within {timeout_s}s")
        time.sleep(0.5)


@contextlib.contextmanager
def base_server(rev: str, env: dict[str, str]) -> Iterator[str]:
    """`kredete serve --transport http` of commit `rev` (a temporary worktree) on this stack; yields its URL."""
    tree = local_dir() / "bench-base" / rev
    if not tree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=REPO_ROOT, check=True,
                       capture_output=True)
    port = free_port()
    argv = [sys.executable, "-c", "import sys; from kredete.cli import main; sys.argv[0] = 'kredete'; main()",
            "serve", "--transport", "http", "--port", str(port)]
    old_env = {**env, "PYTHONPATH": str(tree), "KREDETE_LOCAL_DIR": str(local_dir())}
    try:
        with listening_process(argv, port=port, env=old_env, log_path=local_dir() / f"bench-base-{rev}.log",
                               what=f"the server of {rev}", timeout_s=300, cwd=tree):
            yield f"http://127.0.0.1:{port}/mcp"
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO_ROOT, capture_output=True)


def run(calls: int, clients: int, workers: list[int], users: int, base: str | None = None,
        rounds: int = 6) -> dict[str, Any]:
    from bench.profile_calls import _migrate
    from evals.harness import http_server

    ds = Dataset("bench", users=users, seed=42)
    with console.status("preparing the bench dataset"):
        ds.prepare(log=lambda m: console.log(m))
        _migrate(ds.env)
    settings = ds.settings()
    env = {**ds.env, **LIMITS}
    txs = asyncio.run(_transactions(settings))
    res: dict[str, Any] = {
        "tool": TOOL, "calls": calls, "clients": clients, "users": users, "rounds": rounds,
        "host": {"python": platform.python_version(), "cores": os.cpu_count(), "load_1m": os.getloadavg()[0],
                 "load_avg_start": os.getloadavg()},
    }
    started = time.perf_counter()
    with console.status("floor: prepared asyncpg"):
        res["floor"] = asyncio.run(floor(settings, txs, calls))
    with console.status("stdio"):
        res["stdio"] = asyncio.run(stdio(env, settings, txs, calls))
    with contextlib.ExitStack() as servers:
        urls: dict[str, str] = {}
        if base is not None:
            rev = subprocess.run(["git", "rev-parse", "--short", base], cwd=REPO_ROOT, check=True,
                                 capture_output=True, text=True).stdout.strip()
            with console.status(f"starting the server of {rev}"):
                urls["base"] = servers.enter_context(base_server(rev, env))
        for n in workers:
            with console.status(f"starting http, {n} worker(s)"):
                urls[str(n)] = servers.enter_context(http_server(env, log_name=f"bench-scale-{n}",
                                                                 args=["--workers", str(n)], timeout_s=300))
                _wait_started(f"bench-scale-{n}", n)
        with console.status(f"http, interleaved: {', '.join(urls)}"):
            measured = asyncio.run(http_interleaved(urls, settings, txs, calls, clients, rounds))
    if base is not None:
        res["base"] = {"rev": rev, **measured.pop("base")}
    res["http"] = measured
    f50 = res["floor"]["p50_ms"]
    res["ratios"] = {
        "stdio_p50_over_floor": round(res["stdio"]["p50_ms"] / f50, 2),
        "stdio_p99_over_p50": round(res["stdio"]["p99_ms"] / res["stdio"]["p50_ms"], 2),
        **{f"http{n}_p50_over_floor": round(r["sequential"]["p50_ms"] / f50, 2) for n, r in res["http"].items()},
        **{f"http{n}_p99_over_p50": round(r["sequential"]["p99_ms"] / r["sequential"]["p50_ms"], 2)
           for n, r in res["http"].items()},
    }
    if "1" in res["http"]:
        one = res["http"]["1"]["concurrent"]["calls_per_s"]
        res["ratios"].update({f"calls_per_s_{n}_over_1": round(r["concurrent"]["calls_per_s"] / one, 2)
                              for n, r in res["http"].items() if n != "1"})
    if "base" in res:
        b = res["base"]
        res["ratios"]["base_http_p50_over_floor"] = round(b["sequential"]["p50_ms"] / f50, 2)
        res["ratios"].update({f"calls_per_s_{n}_over_base": round(r["concurrent"]["calls_per_s"]
                                                                   / b["concurrent"]["calls_per_s"], 2)
                              for n, r in res["http"].items()})
    res["host"]["load_avg_end"] = os.getloadavg()
    res["seconds"] = round(time.perf_counter() - started, 1)
    return res


def show(res: dict[str, Any]) -> None:
    t = Table(title=f"{res['tool']}: MCP vs prepared asyncpg ({res['calls']} sequential calls; "
                    f"{res['clients']} clients x {2 * res['calls']} calls; {res['host']['cores']} cores, "
                    f"load {res['host']['load_1m']:.1f})")
    for col in ("path", "p50 ms", "p99 ms", "p50 / floor", "calls/s (clients)"):
        t.add_column(col, justify="left" if col == "path" else "right")
    f = res["floor"]
    t.add_row("floor (asyncpg, prepared)", f"{f['p50_ms']:.2f}", f"{f['p99_ms']:.2f}", "1.0x", "-")
    s = res["stdio"]
    t.add_row("MCP stdio", f"{s['p50_ms']:.2f}", f"{s['p99_ms']:.2f}", f"{s['p50_ms'] / f['p50_ms']:.1f}x", "-")
    if "base" in res:
        q = res["base"]["sequential"]
        t.add_row(f"old path ({res['base']['rev']}), HTTP", f"{q['p50_ms']:.2f}", f"{q['p99_ms']:.2f}",
                  f"{q['p50_ms'] / f['p50_ms']:.1f}x", f"{res['base']['concurrent']['calls_per_s']:.0f}")
    for n, r in res["http"].items():
        q = r["sequential"]
        t.add_row(f"MCP HTTP, {n} worker(s)", f"{q['p50_ms']:.2f}", f"{q['p99_ms']:.2f}",
                  f"{q['p50_ms'] / f['p50_ms']:.1f}x", f"{r['concurrent']['calls_per_s']:.0f}")
    console.print(t)
    console.print(res["ratios"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--users", type=int, default=200, help="seeded users in the bench dataset")
    ap.add_argument("--base", help="a commit whose call path runs in the same run (e.g. df7c838)")
    ap.add_argument("--rounds", type=int, default=6, help="interleaved throughput rounds")
    args = ap.parse_args()
    res = run(args.calls, args.clients, args.workers, args.users, args.base, args.rounds)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    show(res)


if __name__ == "__main__":
    main()
