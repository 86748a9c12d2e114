"""Tool-call benchmark, one run: MCP over HTTP vs the same query made directly, peer MCP servers, and redaction
throughput.

    python -m bench.peers setup      # once: the peer servers into ~/.cache/kredete/peers (never in CI)
    python -m bench.tool_calls [--calls 300] [--concurrency 8] [--users 200] [--fresh] [--peer-calls 300]

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

Peers (same run, same data, each against the same transport; every path once per round, `--peer-calls`
rounds, sequential; a peer that is not installed is left out and `peers.installs` says why):

  get_transaction  ours over stdio and HTTP; Crystal DBA's postgres-mcp `execute_sql` (restricted mode, the
                   agent's replica URL) with one SELECT equivalent to the tool's (json_agg for a text answer), over
                   stdio (postgres-mcp 0.3.0 has stdio and SSE, no streamable HTTP); the prepared asyncpg floor
  get_dispute      ours over HTTP and stdio; mongodb-mcp-server `find` (read-only, the repository's filter) on the
                   same FerretDB database over streamable HTTP (JSON responses, as ours) and stdio; a pymongo
                   floor (AsyncMongoClient, one find)

  bare SDK         both tools, beside them in the same rounds: `bench.bare_sdk`, the same `mcp` SDK and transports
                   as ours (stdio on event-loop pipes; stateless streamable HTTP with JSON responses on the same
                   uvicorn protocol), one tool of the same name and input and output schemas (from our
                   `tools/list`) answering every call with one real answer of ours recorded before the rounds:
                   what the SDK, the transport and the Python client cost with none of our code. Ours over it is
                   our code's share; it over the floor says how near the floor any server on this SDK can get.
                   `bare_sdk_http_auth` adds the SDK's bearer-token machinery (any token accepted) as ours uses it.

The peers check nothing (no authentication, scope, redaction, budget or audit): the comparison is what an agent
waits for. The server runs with raised rate limits here (the Redis check still runs on every call).

Data: its own dataset (`kredete_bench` Postgres/Mongo DBs, `kredete-bench` index prefix), built through the
CLI on first use and reused after. Results: bench/results/tool_calls.json (or `--out`) and a rich table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import platform
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
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
    from stores.postgres.transactions import DETAIL_WITH_LINES, SUMMARY_COLUMNS

    return {
        # The repository's one statement: the transaction with its ledger lines and refunds.
        "get": f"SELECT {DETAIL_WITH_LINES} FROM transactions t WHERE t.id = $1::uuid AND TRUE",
        "search": f"SELECT {SUMMARY_COLUMNS} FROM transactions t WHERE t.user_id = ANY($1::uuid[]) "
                  "ORDER BY t.created_at DESC, t.id DESC LIMIT $2",
    }


@contextlib.asynccontextmanager
async def prepared_get_transaction(settings: Any) -> AsyncIterator[Callable[[Any], Awaitable[None]]]:
    """The floor of `get_transaction` (bench.mcp_scale): the repository's statement (the transaction with its
    ledger lines and refunds) on one bare asyncpg connection of the agent replica, prepared by asyncpg's
    statement cache; yields `call(transaction_id)`."""
    import asyncpg

    sql = _raw_sql()
    pool = await asyncpg.create_pool(settings.postgres_agent_replica_url.get_secret_value(), min_size=1, max_size=1)
    try:
        async def call(tx: Any) -> None:
            async with pool.acquire() as conn:
                await conn.fetchrow(sql["get"], tx)

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
                    await conn.fetchrow(sql["get"], txs[i % len(txs)])
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
                d = {k: v for k, v in d.items() if k != "_id"}  # a copy: the scan pages on the rows' _id
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


# --- peers: the same questions through other MCP servers, same transport, in interleaved rounds --------

PEER_TIMEOUT_S = 180


def _peer_sql(tx: Any) -> str:
    """`get_transaction`'s statement as a SQL tool takes it: the lines as json_agg (the id is a UUID we chose)."""
    from stores.postgres.transactions import DETAIL_COLUMNS

    tid = str(UUID(str(tx)))
    return (f"SELECT {DETAIL_COLUMNS}, "
            "(SELECT json_agg(e ORDER BY e.line_no) FROM (SELECT line_no, wallet_id, currency, direction, "
            "amount_minor, entry_type FROM ledger_entries WHERE transaction_id = t.id AND created_at = t.created_at)"
            " e) AS entries, "
            "(SELECT json_agg(r ORDER BY r.created_at, r.id) FROM (SELECT id, amount_minor, currency, status, "
            "reason, created_at, refund_transaction_id FROM refunds WHERE transaction_id = t.id) r) AS refunds "
            f"FROM transactions t WHERE t.id = '{tid}'::uuid")


def _dispute_filter(dispute: tuple[str, str]) -> dict[str, Any]:
    """The filter `DisputeRepository.get` sends for one user's dispute (scope, user, id)."""
    dispute_id, user_id = dispute
    return {"user_id": {"$eq": user_id}, "_id": {"$eq": dispute_id}}


async def _disputes(settings: Any, n: int, seed: int = 13) -> list[tuple[str, str]]:
    from stores.mongo.client import MongoStore

    mongo = await MongoStore(settings.mongo_url.get_secret_value(), settings.mongo_db).connect()
    try:
        rows = await mongo.db.dispute_cases.find({}, {"user_id": 1}).sort("_id", 1).to_list(None)
    finally:
        await mongo.close()
    rng = random.Random(seed)
    return [(str(d["_id"]), str(d["user_id"])) for d in (rng.choice(rows) for _ in range(n))]


@contextlib.asynccontextmanager
async def _stdio(command: str, args: list[str], env: dict[str, str]) -> AsyncIterator[Any]:
    import os
    import tempfile

    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    from config.paths import REPO_ROOT

    params = StdioServerParameters(command=command, args=args, env={"PATH": os.environ.get("PATH", ""), **env},
                                   cwd=str(REPO_ROOT))
    with tempfile.TemporaryFile("w+") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as s:
            await asyncio.wait_for(s.initialize(), PEER_TIMEOUT_S)
            yield s


@contextlib.contextmanager
def _mongodb_mcp_http(env: dict[str, str]) -> Iterator[str]:
    """mongodb-mcp-server over streamable HTTP with JSON responses (as ours answers), on a free port."""
    from bench.peers import mongodb_mcp_binary
    from config.paths import local_dir
    from config.ports import free_port
    from evals.listening import listening_process

    port = free_port()
    argv = [str(mongodb_mcp_binary()), "--transport", "http", "--httpPort", str(port), "--httpResponseType", "json"]
    with listening_process(argv, port=port, env=env, log_path=local_dir() / "bench-mongodb-mcp-http.log",
                           what="mongodb-mcp-server", timeout_s=PEER_TIMEOUT_S):
        yield f"http://127.0.0.1:{port}/mcp"


@contextlib.asynccontextmanager
async def _bare_sdk(ours: Any, calls: dict[str, dict[str, Any]], token: str) -> AsyncIterator[dict[str, Any]]:
    """The bare SDK (bench.bare_sdk) serving what `ours` lists and answers for `calls` (recorded once here),
    started as ours is; yields its sessions: over stdio, over streamable HTTP, and over HTTP with the SDK's
    bearer-token machinery (`--auth`: any token accepted; sent `token`, ours, so the requests are the same size)."""
    import os
    import tempfile

    from bench.bare_sdk import record
    from config.paths import REPO_ROOT, local_dir
    from config.ports import free_port
    from evals.listening import listening_process

    with tempfile.TemporaryDirectory() as tmp:
        recorded = Path(tmp) / "recorded.json"
        await record(ours, calls, recorded)
        argv = [sys.executable, "-m", "bench.bare_sdk", "--record", str(recorded)]
        penv = {"PATH": os.environ.get("PATH", "")}
        async with contextlib.AsyncExitStack() as stack:
            sessions: dict[str, Any] = {"stdio": await stack.enter_async_context(_stdio(sys.executable, argv[1:], {}))}
            for name, extra, bearer in (("http", [], None), ("http_auth", ["--auth"], token)):
                port = free_port()
                stack.enter_context(listening_process(
                    [*argv, "--transport", "http", "--port", str(port), *extra], port=port, env=penv,
                    log_path=local_dir() / f"bench-bare-sdk-{name}.log", what="bare SDK server",
                    timeout_s=PEER_TIMEOUT_S, cwd=REPO_ROOT))
                sessions[name] = await stack.enter_async_context(http_session(f"http://127.0.0.1:{port}/mcp", bearer))
            yield sessions


async def _bare_call(s: Any, tool: str, arguments: dict[str, Any], label: str, errors: list[str]) -> None:
    _ok(await s.call_tool(tool, arguments), label, errors)


def _mongodb_env(settings: Any) -> dict[str, str]:
    import os

    url = settings.mongo_url.get_secret_value()
    return {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"),
            "MDB_MCP_CONNECTION_STRING": url, "MDB_MCP_READ_ONLY": "true", "MDB_MCP_TELEMETRY": "disabled",
            "MDB_MCP_LOGGERS": "stderr", "DO_NOT_TRACK": "1"}


async def _rounds(paths: dict[str, Callable[[int], Awaitable[Any]]], n: int) -> dict[str, dict[str, Any]]:
    """Every path once per round, `n` rounds after a warm-up: the machine's load drifts alike over all paths."""
    for i in range(WARMUP):
        for call in paths.values():
            await call(10_000 + i)
    ms: dict[str, list[float]] = {name: [] for name in paths}
    for i in range(n):
        for name, call in paths.items():
            t = time.perf_counter()
            await call(i)
            ms[name].append((time.perf_counter() - t) * 1000)
    return {name: latency_summary(v) for name, v in ms.items()}


def _ok(result: Any, what: str, errors: list[str]) -> None:
    from evals.harness import error_text

    if result.is_error:
        errors.append(f"{what}: {error_text(result)[:300]}")


async def bench_peer_transactions(url: str, env: dict[str, str], settings: Any, txs: list[UUID],
                                  n: int) -> dict[str, Any]:
    """get_transaction: ours over stdio and HTTP, postgres-mcp's execute_sql over stdio (it has no streamable
    HTTP), and the prepared asyncpg floor, in interleaved rounds."""
    from bench.peers import postgres_mcp_binary
    from evals.harness import KREDETE, token_for

    errors: list[str] = []
    token = token_for(settings, "support_agent", subject="bench-peers")
    replica = settings.postgres_agent_replica_url.get_secret_value()
    async with contextlib.AsyncExitStack() as stack:
        floor = await stack.enter_async_context(prepared_get_transaction(settings))
        ours_stdio = await stack.enter_async_context(_stdio(KREDETE, ["serve"], {**env, "KREDETE_TOKEN": token}))
        ours_http = await stack.enter_async_context(http_session(url, token))
        paths: dict[str, Callable[[int], Awaitable[Any]]] = {
            "floor_asyncpg": lambda i: floor(txs[i % len(txs)]),
        }

        async def kredete(s: Any, i: int, label: str) -> None:
            _ok(await s.call_tool("get_transaction", {"transaction_id": str(txs[i % len(txs)])}), label, errors)

        paths["kredete_stdio"] = lambda i: kredete(ours_stdio, i, "kredete stdio")
        paths["kredete_http"] = lambda i: kredete(ours_http, i, "kredete http")
        bare = await stack.enter_async_context(
            _bare_sdk(ours_http, {"get_transaction": {"transaction_id": str(txs[0])}}, token))
        for name, session in bare.items():
            paths[f"bare_sdk_{name}"] = functools.partial(
                lambda i, s: _bare_call(s, "get_transaction", _args("get_transaction", i, txs, []), "bare SDK", errors),
                s=session)
        if postgres_mcp_binary().exists():
            pg = await stack.enter_async_context(_stdio(str(postgres_mcp_binary()),
                                                        ["--access-mode=restricted", "--transport=stdio", replica],
                                                        {}))

            async def peer(i: int) -> None:
                tx = txs[i % len(txs)]
                res = await pg.call_tool("execute_sql", {"sql": _peer_sql(tx)})
                _ok(res, "postgres-mcp", errors)
                if str(tx) not in " ".join(getattr(c, "text", "") for c in res.content):
                    errors.append("postgres-mcp: the transaction was not returned")

            paths["postgres_mcp_stdio"] = peer
        res = await _rounds(paths, n)
    if errors:
        raise RuntimeError(f"{len(errors)} peer-bench calls failed, e.g. {errors[0]}")
    return res


async def bench_peer_disputes(url: str, env: dict[str, str], settings: Any, disputes: list[tuple[str, str]],
                              n: int) -> dict[str, Any]:
    """get_dispute: ours over HTTP and stdio, mongodb-mcp-server's find over HTTP and stdio on the same FerretDB
    database, and a pymongo floor (AsyncMongoClient, one find with the repository's filter)."""
    from pymongo import AsyncMongoClient

    from bench.peers import mongodb_mcp_binary
    from evals.harness import KREDETE, token_for

    errors: list[str] = []
    token = token_for(settings, "support_agent", subject="bench-peers")
    db, coll = settings.mongo_db, "dispute_cases"
    async with contextlib.AsyncExitStack() as stack:
        client = AsyncMongoClient(settings.mongo_url.get_secret_value())
        stack.push_async_callback(client.close)
        collection = client[db][coll]

        async def floor(i: int) -> None:
            d = disputes[i % len(disputes)]
            if await collection.find_one(_dispute_filter(d), sort=[("_id", 1)]) is None:
                errors.append(f"floor: no dispute {d[0]}")

        ours_http = await stack.enter_async_context(http_session(url, token))
        ours_stdio = await stack.enter_async_context(_stdio(KREDETE, ["serve"], {**env, "KREDETE_TOKEN": token}))

        def dispute_args(i: int) -> dict[str, Any]:
            dispute_id, user_id = disputes[i % len(disputes)]
            return {"dispute_id": dispute_id, "user_id": user_id}

        async def kredete(s: Any, i: int, label: str) -> None:
            _ok(await s.call_tool("get_dispute", dispute_args(i)), label, errors)

        bare = await stack.enter_async_context(_bare_sdk(ours_http, {"get_dispute": dispute_args(0)}, token))
        paths: dict[str, Callable[[int], Awaitable[Any]]] = {
            "floor_pymongo": floor,
            "kredete_http": lambda i: kredete(ours_http, i, "kredete http"),
            "kredete_stdio": lambda i: kredete(ours_stdio, i, "kredete stdio"),
        }
        for name, session in bare.items():
            paths[f"bare_sdk_{name}"] = functools.partial(
                lambda i, s: _bare_call(s, "get_dispute", dispute_args(i), "bare SDK", errors), s=session)
        if mongodb_mcp_binary().exists():
            menv = _mongodb_env(settings)
            mongo_http_url = stack.enter_context(_mongodb_mcp_http(menv))
            mongo_http = await stack.enter_async_context(http_session(mongo_http_url, None))
            mongo_stdio = await stack.enter_async_context(_stdio(str(mongodb_mcp_binary()), ["--transport", "stdio"],
                                                                 menv))

            async def find(s: Any, i: int, label: str) -> None:
                # "preconfigured": the connection of MDB_MCP_CONNECTION_STRING (3.x names a connection per call).
                res = await s.call_tool("find", {"connectionId": "preconfigured", "database": db, "collection": coll,
                                                 "filter": _dispute_filter(disputes[i % len(disputes)]),
                                                 "sort": {"_id": 1}, "limit": 1})
                _ok(res, label, errors)
                if len((res.structured_content or {}).get("documents") or []) != 1:
                    errors.append(f"{label}: the dispute was not found")

            paths["mongodb_mcp_http"] = lambda i: find(mongo_http, i, "mongodb-mcp http")
            paths["mongodb_mcp_stdio"] = lambda i: find(mongo_stdio, i, "mongodb-mcp stdio")
        res = await _rounds(paths, n)
    if errors:
        raise RuntimeError(f"{len(errors)} peer-bench calls failed, e.g. {errors[0]}")
    return res


def _peer_ratios(peers: dict[str, Any]) -> dict[str, float]:
    """p50 over the same transport's peer and over the floor (below 1: ours is faster than the peer)."""
    out: dict[str, float] = {}
    tx, dis = peers.get("get_transaction", {}), peers.get("get_dispute", {})
    pairs = [("get_transaction", tx, "kredete_stdio", "postgres_mcp_stdio"),
             ("get_dispute", dis, "kredete_http", "mongodb_mcp_http"),
             ("get_dispute", dis, "kredete_stdio", "mongodb_mcp_stdio"),
             # The bare SDK (same transports, a recorded answer): ours over it is the share that is our code.
             ("get_dispute", dis, "bare_sdk_http", "mongodb_mcp_http"),
             ("get_dispute", dis, "bare_sdk_http_auth", "mongodb_mcp_http"),
             ("get_dispute", dis, "bare_sdk_stdio", "mongodb_mcp_stdio")]
    pairs += [(tool, res, f"kredete_{t}", f"bare_sdk_{b}") for tool, res in (("get_transaction", tx),
                                                                            ("get_dispute", dis))
              for t, b in (("stdio", "stdio"), ("http", "http"), ("http", "http_auth"))]
    for tool, res, ours, peer in pairs:
        if ours in res and peer in res:
            out[f"{tool}/{ours}_over_{peer}_p50"] = round(res[ours]["p50_ms"] / res[peer]["p50_ms"], 2)
    for tool, res, floor in (("get_transaction", tx, "floor_asyncpg"), ("get_dispute", dis, "floor_pymongo")):
        for path, r in res.items():
            if path != floor and floor in res:
                out[f"{tool}/{path}_over_floor_p50"] = round(r["p50_ms"] / res[floor]["p50_ms"], 2)
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


def run(calls: int, workers: int, users: int, fresh: bool, peer_calls: int = 300, peers: bool = True) -> dict[str, Any]:
    import os

    from bench.peers import status as peer_status
    from bench.profile_calls import LIMITS

    ds = Dataset("bench", users=users, seed=42)
    with console.status("preparing the bench dataset"):
        ds.prepare(fresh=fresh, log=lambda m: console.log(m))
    settings = ds.settings()
    txs, sample_users = asyncio.run(_sample(settings, 500))
    res: dict[str, Any] = {"calls": calls, "concurrency": workers, "users": users, "rotate_token_every": ROTATE_EVERY,
                           "host": {"python": platform.python_version(), "machine": platform.machine(),
                                    "cores": os.cpu_count(), "load_avg_start": os.getloadavg()}}
    started = time.perf_counter()
    # Raised limits (the Redis check still runs on every call): the peer rounds make hundreds of calls per
    # principal and tool, over stdio too (where a token cannot rotate).
    env = {**ds.env, **LIMITS}
    with http_server(env, log_name="bench-http-server") as url:
        for tool in TOOLS:
            res[tool] = {}
            with console.status(f"{tool}: MCP over HTTP"):
                res[tool]["mcp"] = asyncio.run(bench_mcp(url, settings, tool, calls, workers, txs, sample_users))
            with console.status(f"{tool}: repository"):
                res[tool]["repository"] = asyncio.run(bench_repository(settings, tool, calls, workers, txs,
                                                                       sample_users))
            with console.status(f"{tool}: raw asyncpg"):
                res[tool]["raw"] = asyncio.run(bench_raw(settings, tool, calls, workers, txs, sample_users))
        if peers:
            res["peers"] = {"calls": peer_calls, "installs": peer_status(),
                            "note": "interleaved rounds (every path once per round), sequential calls, p50/p99"}
            with console.status("peers: get_transaction vs postgres-mcp execute_sql (stdio)"):
                res["peers"]["get_transaction"] = asyncio.run(bench_peer_transactions(url, env, settings, txs,
                                                                                      peer_calls))
            disputes = asyncio.run(_disputes(settings, 500))
            with console.status("peers: get_dispute vs mongodb-mcp-server find (HTTP, stdio)"):
                res["peers"]["get_dispute"] = asyncio.run(bench_peer_disputes(url, env, settings, disputes,
                                                                              peer_calls))
            res["peers"]["ratios"] = _peer_ratios(res["peers"])
    res["ratio_mcp_over_direct"] = _ratios(res)
    with console.status("redaction throughput"):
        docs, names = asyncio.run(_documents(settings))
        res["redaction"] = bench_redaction(docs, names)
    res["host"]["load_avg_end"] = os.getloadavg()
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
    if "peers" in res:
        p = Table(title=f"peers: same question, same transport, {res['peers']['calls']} interleaved rounds "
                        f"(load {res['host']['load_avg_start'][0]:.1f} at start)")
        for col in ("tool", "path", "p50 ms", "p99 ms"):
            p.add_column(col, justify="left" if col in ("tool", "path") else "right")
        for tool in ("get_transaction", "get_dispute"):
            for path, v in res["peers"].get(tool, {}).items():
                p.add_row(tool, path, f"{v['p50_ms']:.2f}", f"{v['p99_ms']:.2f}")
        console.print(p)
        console.print(res["peers"]["ratios"])
        for name, st in res["peers"]["installs"].items():
            if not st.get("ok"):
                console.print(f"[red]{name} not installed[/red]: {st.get('steps')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=300, help="sequential calls per tool and path")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--users", type=int, default=200, help="seeded users in the bench dataset")
    ap.add_argument("--fresh", action="store_true", help="rebuild the bench dataset even if it exists")
    ap.add_argument("--peer-calls", type=int, default=300, help="interleaved rounds of the peer comparison")
    ap.add_argument("--no-peers", action="store_true", help="skip the peer MCP servers (`python -m bench.peers "
                                                             "setup` installs them)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="the results file")
    args = ap.parse_args()
    res = run(args.calls, args.concurrency, args.users, args.fresh, args.peer_calls, not args.no_peers)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    show(res)


if __name__ == "__main__":
    main()
