"""Every MCP tool at growing dataset sizes (issue 20's benchmark): p50/p99 over streamable HTTP, customer and staff.

    python -m bench.scale_mcp [--sizes 1000 10000 100000] [--calls 60] [--seed-only] [--remeasure]
                              [--tools corridor_volume ...]
    python bench/scale.py --mcp [same options]

Per size N, a dataset `scale<N>` (Postgres/Mongo databases `kredete_scale<N>`, index prefix `kredete-scale<N>`):
`kredete seed --users N --seed 42` (payments, credit store, S3 documents) and `kredete ingest --only kb` (the
bundled knowledge base: the same articles at every size; no user's records are indexed, so `search_knowledge`
here measures a constant-size index beside growing stores). A complete dataset is reused (the harness's marker +
current migrations); a partial one (databases there, no marker) is resumed: the seeders skip the batches they
checkpointed. A size whose estimated disk use would leave less than `--keep-free-gb` free is refused up front.

Measurement: one `kredete serve --transport http` per size, all running at once, rate limits raised (the Redis check
still runs). Principals: customers (`--customers` sampled users that have disputes and documents, one session each,
calls spread over them), a support agent, a credit coach (a seeded assignment) and a compliance officer. Each calls
every tool its `tools/list` names, with random arguments drawn from that size's data; `--calls` timed calls per tool
per principal after a warm-up, tool by tool: the principals calling it and the sizes interleaved call by call (same
moment, same machine load, for the ratios between sizes and between principals).
Results merge per size into bench/results/scale_mcp.json (sizes accumulate; the file is written after each tool, so
an interrupted run, run again without `--remeasure`, keeps the tools it finished and measures the rest with the same
sizes), plot: bench/results/scale_mcp.png (one panel per principal, one line per tool).

Goals (issue 20): every tool's p50 at the largest size <= 1.5x its p50 at the smallest; p99 <= 200 ms at the largest.

Stack profile: size runs use the `lean` one (`KREDETE_STACK_PROFILE=lean`, `kredete stack up --profile lean`): the
PostgreSQL primary alone, without the default profile's two streaming replicas and pgBackRest WAL archive, because
those keep every PostgreSQL byte four times: 100k users would take ~40 GB of disk instead of ~11. Reads that go to a
replica on the default stack then hit the primary (the write and read paths share one server). The estimate and the
up-front refusal follow the running profile's copies; the profile is recorded with each size's results.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "scale_mcp.json"
SEED = 42
WARMUP = 5
P50_RATIO_GOAL = 1.5
P99_GOAL_MS = 200.0
#: Disk one seeded user takes in the payments database (rows and indexes): pg_database_size of kredete_scale10000
#: after its seed (187 MB), rounded up.
PAYMENTS_BYTES_PER_USER = 20_000
#: The user's S3 documents (35 % of users have 1-3): the documents bucket after 10k users (88 MB), rounded up.
DOCUMENT_BYTES_PER_USER = 10_000
console = Console(width=None if sys.stdout.isatty() else 150)


# --- pure parts (unit-tested) ---------------------------------------------------------------------------

def disk_needed(users: int, profile: str | None = None) -> int:
    """Bytes a dataset of `users` takes on the local stack under `profile` (default: the current one): the credit
    store's per-user size (bench/scale.py's measurement) and the payments rows, each in every PostgreSQL copy the
    profile keeps (the credit store is FerretDB on the same PostgreSQL; `lean`: the primary alone; `default`: also
    two replicas and the WAL archive), plus the documents; +30 % for WAL and index builds (bench/scale.py's
    margin). 10k users grew `.local/` of the default profile by 3.0 GB (this gives 3.9)."""
    from bench.scale import BYTES_PER_USER, postgres_copies

    pg = (BYTES_PER_USER + PAYMENTS_BYTES_PER_USER) * postgres_copies(profile)
    return int(users * (pg + DOCUMENT_BYTES_PER_USER) * 1.3)


def disk_refusal(users: int, free: int, keep_free: int, done: float = 0.0, profile: str | None = None) -> str | None:
    """Why a dataset of `users` must not be seeded (None: it fits and leaves `keep_free` bytes); `done`: the share
    a resumed seed has loaded already (only the rest is still to come)."""
    need = disk_needed(users, profile) * (1 - done)
    if free - need < keep_free:
        part = f" ({done:.0%} seeded already)" if done else ""
        from config.settings import get_settings

        return (f"refused: {users:,} users need about {need / 2**30:.1f} GiB more{part} on the "
                f"{profile or get_settings().stack_profile} stack profile; {free / 2**30:.1f} GiB free, and "
                f"{keep_free / 2**30:.0f} GiB must stay free")
    return None


def merge(existing: dict[str, Any], size: int, entry: dict[str, Any]) -> dict[str, Any]:
    """The results file with `size`'s entry replaced (other sizes kept, sorted by size)."""
    sizes = dict(existing.get("sizes", {}))
    sizes[str(size)] = entry
    return {**existing, "sizes": {k: sizes[k] for k in sorted(sizes, key=int)}}


def dataset_step(ready: bool, exists: bool, refusal: str | None) -> str:
    """What to do with a size's dataset: reuse a complete one, resume a partial one (its databases are there,
    the marker of a finished build is not), build it, or refuse it (not complete and too big for the disk)."""
    if ready:
        return "reuse"
    if refusal:
        return "refuse"
    return "resume" if exists else "build"


def missing_sizes(existing: dict[str, Any], sizes: list[int], remeasure: bool) -> list[int]:
    done = set() if remeasure else {int(k) for k, v in existing.get("sizes", {}).items() if v.get("complete")}
    return [n for n in sizes if n not in done]


def carried(existing: dict[str, Any], todo: list[int], calls: int) -> dict[int, dict[str, Any]]:
    """The tools an interrupted run of the same sizes and call count measured already, per size (resumed
    from there); nothing for a size whose partial entry came from another run's shape."""
    out: dict[int, dict[str, Any]] = {}
    for n in todo:
        e = existing.get("sizes", {}).get(str(n)) or {}
        same = e.get("measured_with") == sorted(todo) and e.get("calls_per_tool") == calls
        out[n] = dict(e.get("tools", {})) if same and not e.get("complete") else {}
    return out


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 20's goals per (principal, tool): p50 at the largest size over the smallest, p99 at the largest
    (complete sizes only)."""
    sizes = sorted(int(k) for k, v in results.get("sizes", {}).items() if v.get("complete"))
    if not sizes:
        return []
    lo, hi = results["sizes"][str(sizes[0])]["tools"], results["sizes"][str(sizes[-1])]["tools"]
    rows = []
    for key in sorted(hi):
        top = hi[key]
        row: dict[str, Any] = {"tool": key, "small": sizes[0], "large": sizes[-1], "p50_large_ms": top["p50_ms"],
                               "p99_large_ms": top["p99_ms"], "p99_ok": top["p99_ms"] <= P99_GOAL_MS,
                               "errors": top.get("errors", 0)}
        if key in lo and lo[key]["p50_ms"] > 0 and sizes[-1] != sizes[0]:
            row["p50_small_ms"] = lo[key]["p50_ms"]
            row["p50_ratio"] = round(top["p50_ms"] / lo[key]["p50_ms"], 2)
            row["p50_ok"] = row["p50_ratio"] <= P50_RATIO_GOAL
        rows.append(row)
    return rows


# --- datasets -------------------------------------------------------------------------------------------

#: One S3 bucket prefix for every size: the service principals `kredete s3 setup` makes are server-wide, each
#: with a policy naming one prefix's buckets, so servers of several sizes running at once can only all read
#: documents from one shared prefix. The documents are pure functions of (seed, user): a larger size's
#: bucket holds the smaller sizes' objects too (`get_document_link` heads one key; the bucket's size does not
#: enter its cost).
S3_PREFIX = "kredete-scale"
#: Users whose S3 documents are seeded at every size: the first 10k. The documents seeder writes ~16 objects/s
#: here (SSE-KMS, each sealed under its user's key), so 50k users' 30k objects would take half an hour; above
#: 10k users the seed runs with --skip-documents and customers are drawn among the first 10k users (their rows
#: are read from the full-size stores like anyone's; staff draw from every user).
DOCUMENT_USERS = 10_000


def dataset(users: int) -> Any:
    from evals.harness import Dataset

    @dataclass(frozen=True)
    class ScaleDataset(Dataset):
        def _spec(self) -> dict[str, Any]:
            return {**super()._spec(), "s3_bucket_prefix": S3_PREFIX}

    return ScaleDataset(f"scale{users}", users=users, seed=SEED, ingest=("kb",),
                        extra_env={"KREDETE_S3_BUCKET_PREFIX": S3_PREFIX})


async def seeded_share(users: int) -> float:
    """How much of a partial dataset is loaded, by bytes: the payments seed's and the credit store's checkpoints."""
    from bench.scale import BYTES_PER_USER
    from kredete.seed.mongo import BATCH
    from kredete.seed.payments import BATCH_USERS
    from stores.mongo.client import MongoStore
    from stores.postgres.bulk_load import direct_connection

    settings = dataset(users).settings()
    async with direct_connection(settings.postgres_url.get_secret_value()) as conn:
        pay = await conn.fetchval("SELECT count(*) FROM seed_progress WHERE batch_no > 0") \
            if await conn.fetchval("SELECT to_regclass('seed_progress') IS NOT NULL") else 0
    mongo = await MongoStore(settings.mongo_url.get_secret_value(), settings.mongo_db, timeout=60).connect()
    try:
        credit = await mongo.db["load_progress"].count_documents({})
    finally:
        await mongo.close()
    pay_share = min(1.0, pay / -(-users // BATCH_USERS))
    credit_share = min(1.0, credit / -(-users // BATCH))
    return (pay_share * PAYMENTS_BYTES_PER_USER + credit_share * BYTES_PER_USER) / (
        PAYMENTS_BYTES_PER_USER + BYTES_PER_USER)


def prepare(users: int, keep_free: int, log: Any) -> None:
    """Reuse a complete dataset, resume a partial one, or build it; refuse up front one that does not fit."""
    from evals.harness import _run_steps

    ds = dataset(users)
    ready = ds.is_ready()
    exists = not ready and asyncio.run(ds._exists())
    done = asyncio.run(seeded_share(users)) if exists else 0.0
    reason = None if ready else disk_refusal(users, shutil.disk_usage(ROOT).free, keep_free, done)
    step = dataset_step(ready, exists, reason)
    if step == "reuse":
        log(f"{ds.name}: reusing the complete dataset")
        asyncio.run(ds.current_rates())
        return
    if step == "refuse":
        raise SystemExit(f"{ds.name}: {reason}")
    ds.marker.unlink(missing_ok=True)  # written again only once every step has finished
    if step == "build":
        log(f"{ds.name}: building ({disk_needed(users) / 2**30:.1f} GiB estimated)")
        asyncio.run(ds._recreate_databases())
    else:
        # The databases are there but the marker is not: an interrupted build. The seeders skip what they
        # checkpointed (payments batches, credit-store batches, unchanged S3 objects); ingestion resumes.
        log(f"{ds.name}: resuming a partial dataset ({disk_needed(users) / 2**30:.1f} GiB estimated when complete)")
    # The harness's own build (Dataset.prepare) stops a build after 30 min: 50k users take longer here.
    ingest = ["ingest", *(["--reset"] if step == "build" else []), *(a for s in ds.ingest for a in ("--only", s))]
    seed = [["seed", "--users", str(users), "--seed", str(SEED)]]
    if users > DOCUMENT_USERS:  # the first DOCUMENT_USERS users' documents only (the rows are all checkpointed)
        seed = [[*seed[0], "--skip-documents"], ["seed", "--users", str(DOCUMENT_USERS), "--seed", str(SEED)]]
    _run_steps([["db", "migrate"], *seed, ingest], ds.env, log, timeout=6 * 3600)
    asyncio.run(ds.current_rates())
    ds.marker.parent.mkdir(parents=True, exist_ok=True)
    ds.marker.write_text(json.dumps(ds._spec()))


# --- what each size's calls draw from -------------------------------------------------------------------

@dataclass
class Customer:
    user_id: UUID
    transactions: list[str]
    disputes: list[str]
    documents: list[str]


@dataclass
class Sample:
    users: int
    customers: list[Customer]
    staff_users: list[UUID]
    staff_transactions: list[str]
    staff_disputes: list[tuple[str, UUID]]
    coach: str
    coach_users: list[UUID]
    pairs: list[tuple[str, str]]
    corridors: list[str]
    indexed: dict[str, Any] = field(default_factory=dict)


async def draw(users: int, n_customers: int, rng: random.Random) -> Sample:
    """Random users of the dataset (by seed index, the seed is pure), with their rows, disputes and documents."""
    from kredete.seed.documents import documents_for
    from kredete.seed.people import person, user_id_for
    from stores.mongo.client import MongoStore
    from stores.postgres.bulk_load import direct_connection

    ds = dataset(users)
    settings = ds.settings()
    picks = rng.sample(range(users), min(users, 600))  # staff's users
    # customers: users with S3 documents (see DOCUMENT_USERS)
    cpicks = rng.sample(range(min(users, DOCUMENT_USERS)), min(users, DOCUMENT_USERS, 200))
    docs: dict[str, list[str]] = {}
    for d in documents_for([person(SEED, i) for i in cpicks], SEED):
        docs.setdefault(d.user_id, []).append(d.key)
    staff_ids = [str(user_id_for(SEED, i)) for i in picks]
    mongo = await MongoStore(settings.mongo_url.get_secret_value(), settings.mongo_db, timeout=60).connect()
    try:
        ids = list(dict.fromkeys([str(user_id_for(SEED, i)) for i in cpicks] + staff_ids))
        disputes: dict[str, list[str]] = {}
        # One `$eq` per user: FerretDB pushes it down to the user_id index; `$in` is not pushed down and read every
        # dispute (13 s at 100k users on this machine at load ~4, 0.8 s for these ~800 lookups; the same sample).
        for uid in ids:
            async for d in mongo.db["dispute_cases"].find({"user_id": {"$eq": uid}}, {"_id": 1, "user_id": 1}):
                disputes.setdefault(d["user_id"], []).append(str(d["_id"]))
    finally:
        await mongo.close()
    async with direct_connection(settings.postgres_url.get_secret_value()) as conn:
        rows = await conn.fetch("SELECT id, user_id FROM transactions WHERE user_id = ANY($1::uuid[])",
                                [UUID(i) for i in ids])
        coaches = await conn.fetch("SELECT coach_subject, user_id FROM coach_assignments ORDER BY coach_subject")
        corr = await conn.fetch("SELECT id, source_currency, dest_currency FROM corridors WHERE enabled ORDER BY id")
    txs: dict[str, list[str]] = {}
    for r in rows:
        txs.setdefault(str(r["user_id"]), []).append(str(r["id"]))
    full = [u for u in ids if u in docs and u in disputes and u in txs]
    staff = set(staff_ids)
    if len(full) < n_customers:
        raise SystemExit(f"scale{users}: only {len(full)} sampled users have disputes, documents and transactions")
    customers = [Customer(UUID(u), txs[u], disputes[u], docs[u]) for u in full[:n_customers]]
    coach = coaches[0]["coach_subject"]
    return Sample(
        users=users, customers=customers, staff_users=[UUID(u) for u in staff_ids if u in txs],
        staff_transactions=[str(r["id"]) for r in rows if str(r["user_id"]) in staff],
        staff_disputes=[(d, UUID(u)) for u, ds_ in disputes.items() if u in staff for d in ds_],
        coach=coach, coach_users=[r["user_id"] for r in coaches if r["coach_subject"] == coach],
        pairs=sorted({(r["source_currency"], r["dest_currency"]) for r in corr}),
        corridors=[r["id"] for r in corr])


async def indexed(users: int) -> dict[str, Any]:
    """What `search_knowledge` searches at this size: the knowledge index's chunk count by source."""
    import httpx

    from config.settings import resolve

    settings = dataset(users).settings()
    url = resolve(settings).opensearch_url.get_secret_value().split(",")[0].rstrip("/")
    body = {"size": 0, "aggs": {"t": {"terms": {"field": "doc_type", "size": 20}}}}
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(f"{url}/{settings.index_prefix}-chunks/_search", json=body)
    if r.status_code != 200:
        return {"error": f"HTTP {r.status_code}"}
    data = r.json()
    return {"chunks": data["hits"]["total"]["value"],
            "by_doc_type": {b["key"]: b["doc_count"] for b in data["aggregations"]["t"]["buckets"]}}


# --- the calls ------------------------------------------------------------------------------------------

QUERIES = [q["query"] for q in json.loads((ROOT / "evals" / "data" / "retrieval_queries.json").read_text())["queries"]]
STATUSES = ("completed", "pending", "failed", None)
DISPUTE_STATUSES = ("opened", "submitted_to_bureau", "under_review", "resolved", "rejected", None)


def _window(rng: random.Random) -> tuple[str, str]:
    start = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=rng.randrange(0, 600))
    return start.isoformat(), (start + timedelta(days=rng.choice((7, 30, 90)))).isoformat()


def arguments(tool: str, role: str, s: Sample, c: Customer | None, rng: random.Random,
              conversation: str) -> dict[str, Any]:
    """Random, valid arguments for `tool` as `role` (customer `c`), drawn from the sample; `conversation`: the
    session's own conversation id (the first principal to use one owns it)."""
    staff_user = str(rng.choice(s.coach_users if role == "credit_coach" else s.staff_users))
    if tool in ("get_credit_report", "get_score_history", "get_action_plan", "get_wallet_balances"):
        return {} if c else {"user_id": staff_user}
    if tool == "list_disputes":
        a: dict[str, Any] = {"limit": rng.choice((10, 20))}
        if (st := rng.choice(DISPUTE_STATUSES)) and role != "customer":
            a["status"] = st
        return a
    if tool == "get_dispute":
        if c:
            return {"dispute_id": rng.choice(c.disputes)}
        d, u = rng.choice(s.staff_disputes)
        return {"dispute_id": d, "user_id": str(u)}
    if tool == "get_document_link":
        return {"document_id": rng.choice(c.documents) if c else ""}
    if tool == "get_fx_quote":
        sell, buy = rng.choice(s.pairs)
        return {"sell_currency": sell, "buy_currency": buy, "sell_amount_minor": rng.randrange(1_000, 200_000)}
    if tool == "search_knowledge":
        return {"query": rng.choice(QUERIES), "k": 5}
    if tool == "search_transactions":
        a = {} if c else {"user_id": staff_user}
        if (st := rng.choice(STATUSES)) is not None:
            a["status"] = st
        if rng.random() < 0.5:
            a["date_from"], a["date_to"] = _window(rng)
        return a
    if tool == "get_transaction":
        return {"transaction_id": rng.choice(c.transactions if c else s.staff_transactions)}
    if tool == "log_turn":
        return {"role": "user", "content": rng.choice(QUERIES), "conversation_id": conversation}
    if tool == "log_feedback":
        return {"conversation_id": conversation,
                "score": rng.choice((-1, 1)), "label": rng.choice(("helpful", "not_helpful", "other"))}
    if tool == "corridor_volume":
        lo, hi = _window(rng)
        a = {"date_from": lo, "date_to": hi}
        if rng.random() < 0.5:
            a["corridor"] = rng.choice(s.corridors)
        return a
    if tool == "search_audit_logs":
        return {"limit": 20, "date_from": (datetime.now(UTC) - timedelta(hours=rng.choice((1, 24)))).isoformat()}
    raise ValueError(f"no argument maker for tool {tool!r}")


@dataclass
class Principal:
    role: str
    sessions: list[Any]  # one per customer, or one
    customers: list[Customer | None]
    listed: list[str] = field(default_factory=list)  # tools/list
    tools: list[str] = field(default_factory=list)  # the listed tools this role is granted (others are refused)


STAFF = ("support_agent", "credit_coach", "compliance_officer")


async def open_principals(stack: contextlib.AsyncExitStack, url: str, s: Sample) -> dict[str, Principal]:
    from agent_tools.registry import BY_NAME
    from evals.harness import http_session, token_for

    settings = dataset(s.users).settings()
    out: dict[str, Principal] = {}
    sessions = [await stack.enter_async_context(http_session(url, token_for(settings, "customer", user=c.user_id)))
                for c in s.customers]
    out["customer"] = Principal("customer", sessions, list(s.customers))
    for role in STAFF:
        subject = s.coach if role == "credit_coach" else f"scale-mcp-{role}-{os.getpid()}"
        token = token_for(settings, role, subject=subject)
        out[role] = Principal(role, [await stack.enter_async_context(http_session(url, token))], [None])
    for p in out.values():
        p.listed = sorted(t.name for t in (await p.sessions[0].list_tools()).tools)
        p.tools = [t for t in p.listed if p.role in {r.value for r in BY_NAME[t].grant}]
    return out


async def measure(urls: dict[int, str], samples: dict[int, Sample], calls: int, on_tool: Any,
                  done: dict[int, dict[str, Any]], only: frozenset[str] | None = None,
                  ) -> tuple[dict[int, dict[str, Any]], dict[str, Any]]:
    """Every tool of every principal, the sizes interleaved call by call: ({size: {"role/tool": summary}},
    coverage: what tools/list named, what each role called, and any listed tool no principal could call).
    `done`: summaries an interrupted run left, kept (those tools are not called again). `only`: these tools alone."""
    from evals.harness import error_text, latency_summary

    res: dict[int, dict[str, Any]] = {n: dict(done.get(n, {})) for n in urls}
    async with contextlib.AsyncExitStack() as stack:
        principals = {n: await open_principals(stack, urls[n], samples[n]) for n in urls}
        first = principals[min(urls)]
        listed = first["customer"].listed
        coverage = {"listed": listed, "called": {role: p.tools for role, p in first.items()},
                    "not_called": sorted(set(listed) - {t for p in first.values() for t in p.tools})}
        run = f"{os.getpid()}-{int(time.time())}"
        # Tool by tool, every principal that calls it interleaved with the others call by call (and the sizes
        # within each), so a tool's rows for two principals share the moment and the machine's load: measured one
        # principal after the other, they differed by as much as 2.5x on a tool that reads no user's data.
        tools = sorted({t for p in first.values() for t in p.tools if only is None or t in only},
                       key=lambda t: (t == "log_feedback", t))
        for tool in tools:  # log_feedback last: it needs a logged turn
            roles = [r for r, p in first.items() if tool in p.tools
                     and not all(f"{r}/{tool}" in res[n] for n in urls)]
            if not roles:
                continue
            rngs = {r: random.Random(f"{r}/{tool}") for r in roles}
            ms: dict[tuple[str, int], list[float]] = {(r, n): [] for r in roles for n in urls}
            errors: dict[tuple[str, int], list[str]] = {(r, n): [] for r in roles for n in urls}
            for i in range(WARMUP + calls):
                for role in roles[i % len(roles):] + roles[:i % len(roles)]:
                    for n in (sorted(urls) if i % 2 else sorted(urls, reverse=True)):
                        pr = principals[n][role]
                        k = i % len(pr.sessions)
                        args = arguments(tool, role, samples[n], pr.customers[k], rngs[role],
                                         f"scale-{run}-{role}-{k}")
                        t0 = time.perf_counter()
                        out = await pr.sessions[k].call_tool(tool, args)
                        dt = (time.perf_counter() - t0) * 1000
                        if out.is_error:
                            errors[role, n].append(error_text(out)[:160])
                        if i >= WARMUP:
                            ms[role, n].append(dt)
            for role in roles:
                for n in urls:
                    summary = latency_summary(ms[role, n])
                    summary = {k: summary[k] for k in ("n", "p50_ms", "p95_ms", "p99_ms", "mean_ms")}
                    summary["errors"] = len(errors[role, n])
                    if errors[role, n]:
                        summary["first_error"] = errors[role, n][0]
                    res[n][f"{role}/{tool}"] = summary
                on_tool(role, tool, {n: res[n][f"{role}/{tool}"] for n in urls}, res, coverage)
    return res, coverage


# --- output ---------------------------------------------------------------------------------------------

def show(results: dict[str, Any]) -> None:
    sizes = sorted(int(k) for k in results.get("sizes", {}))
    t = Table(title="MCP tools at size over streamable HTTP: p50 / p99 ms (sizes = seeded users)")
    t.add_column("principal/tool")
    for n in sizes:
        t.add_column(f"{n:,}", justify="right")
    t.add_column("p50 ratio", justify="right")
    t.add_column("goals", justify="center")
    goals = {r["tool"]: r for r in evaluate(results)}
    keys = sorted({k for n in sizes for k in results["sizes"][str(n)]["tools"]})
    for key in keys:
        cells = []
        for n in sizes:
            r = results["sizes"][str(n)]["tools"].get(key)
            cells.append("-" if r is None else f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f}" + (
                f" [red]({r['errors']} err)[/]" if r.get("errors") else ""))
        g = goals.get(key, {})
        ok = g.get("p50_ok", True) and g.get("p99_ok", True)
        t.add_row(key, *cells, f"{g['p50_ratio']:.2f}x" if "p50_ratio" in g else "-",
                  "[green]met[/]" if ok else "[red]missed[/]")
    console.print(t)


def plot(results: dict[str, Any], path: Path) -> None:
    """p50 (top) and p99 (bottom) against size, one panel per principal, one line per tool."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(int(k) for k in results.get("sizes", {}))
    keys = sorted({k for n in sizes for k in results["sizes"][str(n)]["tools"]})
    order = ("customer", *STAFF)
    roles = sorted({k.split("/")[0] for k in keys}, key=lambda r: order.index(r) if r in order else len(order))
    fig, axes = plt.subplots(2, len(roles), figsize=(5 * len(roles), 9), sharex=True, squeeze=False)
    cmap = plt.get_cmap("tab20")
    for col, role in enumerate(roles):
        tools = [k for k in keys if k.startswith(f"{role}/")]
        for i, key in enumerate(tools):
            xs = [n for n in sizes if key in results["sizes"][str(n)]["tools"]]
            for row, q in enumerate(("p50_ms", "p99_ms")):
                axes[row][col].plot(xs, [results["sizes"][str(n)]["tools"][key][q] for n in xs], marker="o",
                                    color=cmap(i % 20), label=key.split("/", 1)[1])
        for row, q in enumerate(("p50", "p99")):
            ax = axes[row][col]
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{role}: {q}", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            if row == 1:
                ax.axhline(P99_GOAL_MS, color="red", linewidth=1, linestyle=":")
                ax.set_xlabel("seeded users")
            if col == 0:
                ax.set_ylabel(f"{q} latency, ms (log)")
        axes[0][col].legend(fontsize=7, loc="upper left")
    load = [v.get("host", {}).get("load_avg_start", [0])[0] for v in results["sizes"].values()]
    fig.suptitle("MCP tool calls over streamable HTTP against dataset size (red: the 200 ms p99 goal); "
                 f"1-min load average at the start {min(load):.0f}-{max(load):.0f} on {os.cpu_count()} cores",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def load(path: Path = RESULTS) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def save(results: dict[str, Any], path: Path = RESULTS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)  # an interrupted write leaves the previous file whole


def run(args: argparse.Namespace) -> None:
    from bench.profile_calls import LIMITS
    from config.settings import get_settings
    from evals.harness import _run_steps, http_server

    log = lambda m: console.log(m)  # noqa: E731
    keep_free = int(args.keep_free_gb * 2**30)
    if args.tools:
        from agent_tools.registry import TOOL_NAMES

        if unknown := sorted(set(args.tools) - TOOL_NAMES):
            raise SystemExit(f"unknown tool(s): {', '.join(unknown)}")
    free = shutil.disk_usage(ROOT).free
    for n in args.sizes:  # every refusal before any seeding starts
        ds = dataset(n)
        if ds.is_ready():
            continue
        done = asyncio.run(seeded_share(n)) if asyncio.run(ds._exists()) else 0.0
        if why := disk_refusal(n, free, keep_free, done):
            raise SystemExit(f"scale{n}: {why}")
        free -= int(disk_needed(n) * (1 - done))  # the sizes before it take their share first
    for n in args.sizes:
        t0 = time.perf_counter()
        prepare(n, keep_free, log)
        log(f"scale{n}: ready after {time.perf_counter() - t0:.0f} s")
    if args.seed_only:
        return
    out = args.results
    results = load(out)
    todo = missing_sizes(results, args.sizes, args.remeasure)
    if not todo:
        log("every size is measured already (--remeasure to measure again)")
    else:
        rng = random.Random(SEED)
        samples = {n: asyncio.run(draw(n, args.customers, rng)) for n in todo}
        for n in todo:
            samples[n].indexed = asyncio.run(indexed(n))
        load_start = os.getloadavg()
        started = time.perf_counter()
        done = {} if args.remeasure else carried(results, todo, args.calls)
        if any(done.values()):
            log("resuming an interrupted measurement: " + ", ".join(f"{n}: {len(t)} tool(s) kept"
                                                                   for n, t in done.items()))

        def entries(res: dict[int, dict[str, Any]], coverage: dict[str, Any], complete: bool) -> None:
            nonlocal results
            host = {"python": platform.python_version(), "cores": os.cpu_count(), "load_avg_start": load_start,
                    "load_avg_end": os.getloadavg(), "stack_profile": get_settings().stack_profile}
            for n in todo:
                s = samples[n]
                results = merge(results, n, {
                    "complete": complete, "run": datetime.now(UTC).isoformat(timespec="seconds"),
                    "measured_with": sorted(todo), "host": host, "seconds": round(time.perf_counter() - started, 1),
                    "calls_per_tool": args.calls, "customers": len(s.customers), "coach_users": len(s.coach_users),
                    "indexed": s.indexed, "coverage": coverage, "tools": res[n]})
            save(results, out)

        # The server's S3 principals read the shared prefix's documents (see S3_PREFIX): set them up for it.
        _run_steps([["s3", "setup"]], dataset(todo[0]).env, log)
        with contextlib.ExitStack() as servers:
            urls = {n: servers.enter_context(http_server({**dataset(n).env, **LIMITS}, log_name=f"scale-mcp-{n}",
                                                         timeout_s=300)) for n in todo}
            log(f"servers up for {', '.join(map(str, todo))}; measuring (load {os.getloadavg()[0]:.1f})")

            def on_tool(role: str, tool: str, by_size: dict[int, dict[str, Any]], res: dict[int, dict[str, Any]],
                        coverage: dict[str, Any]) -> None:
                log(f"{role}/{tool}: " + ", ".join(f"{n}: p50 {r['p50_ms']:.1f} p99 {r['p99_ms']:.1f}"
                                                   + (f" ({r['errors']} errors)" if r["errors"] else "")
                                                   for n, r in by_size.items()))
                entries(res, coverage, complete=False)  # an interrupted run resumes after this tool

            only = frozenset(args.tools) if args.tools else None
            measured, coverage = asyncio.run(measure(urls, samples, args.calls, on_tool, done, only))
        entries(measured, coverage, complete=True)
    results["goals"] = evaluate(results)
    save(results, out)
    show(results)
    plot(results, out.with_suffix(".png"))
    log(f"wrote {out} and {out.with_suffix('.png')}")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000], help="seeded users per dataset")
    ap.add_argument("--calls", type=int, default=60, help="timed calls per tool, principal and size")
    ap.add_argument("--customers", type=int, default=10, help="customer principals per size (one session each)")
    ap.add_argument("--keep-free-gb", type=float, default=25.0, help="refuse a size that would leave less free")
    ap.add_argument("--seed-only", action="store_true", help="prepare the datasets, measure nothing")
    ap.add_argument("--remeasure", action="store_true", help="measure sizes already in the results file again")
    ap.add_argument("--results", type=Path, default=RESULTS, help="results file (the plot goes beside it, .png)")
    ap.add_argument("--tools", nargs="+", metavar="TOOL",
                    help="measure these tools only (every principal granted them; an A/B of one tool, say)")
    return ap


def main(argv: list[str] | None = None) -> None:
    import signal

    # SIGTERM unwinds like Ctrl-C: the servers (own process groups) are stopped, the results so far are kept.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run(parser().parse_args(argv))


if __name__ == "__main__":
    main()
