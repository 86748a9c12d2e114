"""The credit store at size: seeding throughput, and its repository reads with and without the pushdown indexes.

A reduced form of issue 20's benchmark (which asks for every MCP tool over streamable HTTP at 1k/10k/100k users):
this one measures the credit-store side, where the latency grew with size, at the sizes given (default 5000).

For one dataset of N users (the documents `kredete seed` writes to the credit store):
  seeding     `seed_credit_store_async` (documents built in worker processes, unordered inserts of their BSON,
              several in flight, indexes made before the load), against raw `insert_many` of the same
              documents (built beforehand in this process with the same per-user keys, build timed apart; one
              ordered call per collection) into another database, and optionally against the seeder run one
              request at a time and built in-process (the loop's shape before issue 20); `--workers`,
              `--parallel`, `--batch-docs`, `--batch-users` tune the seeder, `--seed-only` skips the reads;
  reads       p50/p99 of the repository calls behind `get_credit_report`, `get_score_history`, `list_disputes`
              (customer) and `list_disputes` (staff queue), over random users, each call made on the raw copy
              (FerretDB's own btree indexes only, as before issue 20) and on the seeded one (+ the pushdown
              indexes) in turn; plus the `explain` of each filter on both. The staff queue on the raw copy is the
              find FerretDB sorts in memory (the state before); on the seeded copy it is the keyset page read from
              PostgreSQL's btree index plus point reads by `_id` (`stores.mongo.backend_keyset`);
  queue       the keyset queue alone, deeper: page 1, page 10 (cursor), a status filter, the next page of it,
              with PostgreSQL's plan of each page query.
`--ops` re-measures only some reads (e.g. `--ops queue`), keeping the other results of that size.
Writes bench/results/scale.json (merged per size, so sizes accumulate and an interrupted run resumes: a fully
seeded `kredete_scale_<N>` database is reused, a partly seeded one resumes from its checkpoints).

    .venv/bin/python bench/scale.py --users 5000
    .venv/bin/python bench/scale.py --users 10000 --ops queue   # the staff queue only, on a seeded dataset
    .venv/bin/python bench/scale.py --mcp [--sizes ...]          # every MCP tool at size: bench/scale_mcp.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from config.settings import get_settings, resolve  # noqa: E402
from kredete.seed.mongo import (  # noqa: E402
    BATCH,
    SEEDED,
    WORKERS,
    _build_batch,
    _GivenKeys,
    _plain,
    seed_credit_store_async,
)
from kredete.seed.people import person  # noqa: E402
from stores.crypto import FieldCipher  # noqa: E402
from stores.mongo.backend_keyset import BackendKeyset, Position  # noqa: E402
from stores.mongo.bulk import BATCH_DOCS, PARALLEL  # noqa: E402
from stores.mongo.client import MongoStore  # noqa: E402
from stores.mongo.collections import SPECS, ensure_schema  # noqa: E402
from stores.mongo.credit import CreditReportRepository, DisputeRepository, ScoreHistoryRepository  # noqa: E402
from stores.mongo.encryption import open_field_encryption  # noqa: E402
from stores.mongo.pushdown import (  # noqa: E402
    PushdownIndexer,
    ensure_pushdown_indexes,
    explain_find,
    index_scans,
    plan_nodes,
)
from stores.scope import RowScope  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "scale.json"
#: Disk one seeded user takes in FerretDB's PostgreSQL tables (heap + TOAST + indexes): dbStats' totalSize
#: at 200 users, rounded up (dbStats is not read at size: FerretDB 1.24 counts every
#: document for it). The bench holds up to three copies at once (seeder, raw, one-at-a-time).
BYTES_PER_USER = 56_000
#: Copies of every PostgreSQL byte per stack profile: `default` the primary, its two streaming replicas and the WAL
#: archived to S3 by pgBackRest; `ha` three Patroni members and the archive; `lean` the primary alone (size runs).
POSTGRES_COPIES = {"default": 4, "ha": 4, "lean": 1}
out = Console()


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def summary(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(ms), 2), "p99_ms": round(pct(ms, 0.99), 2), "calls": len(ms)}


def postgres_copies(profile: str | None = None) -> int:
    """How many copies of each PostgreSQL byte the local stack keeps under `profile` (default: the current one)."""
    return POSTGRES_COPIES[profile or get_settings().stack_profile]


def check_disk(users: int, copies: int) -> None:
    """Refuse up front a size that does not fit (PostgreSQL's data lives in the worktree's .local/, once per copy
    the stack profile keeps)."""
    kept = postgres_copies()
    need = BYTES_PER_USER * users * copies * kept * 1.3  # + WAL and sort space while loading and indexing
    free = shutil.disk_usage(ROOT).free
    if need > free:
        sys.exit(f"refused: {users} users need about {need / 2**30:.1f} GiB ({copies} database(s), each kept "
                 f"{kept}x by the {get_settings().stack_profile} stack profile), {free / 2**30:.1f} GiB free")


async def fresh(url: str, name: str, timeout: float = 5.0) -> MongoStore:
    store = await MongoStore(url, name, timeout=timeout).connect()
    await store.drop_database()
    return store


def _proc_cpu(pid: int) -> tuple[float, float]:
    """(own, reaped children's) CPU seconds of a process, from /proc (0 when it is gone)."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    hz = os.sysconf("SC_CLK_TCK")
    return (int(f[11]) + int(f[12])) / hz, (int(f[13]) + int(f[14])) / hz


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by the local stack's FerretDB, its PostgreSQL (postmaster, live backends and the
    ones that exited) and this process (its forkserver's reaped workers apart): load-independent cost."""
    from config import ports
    from kredete.stack.base import pids_listening

    procs = [(int(x), int(p)) for x, p in (
        (d.name, Path(d, "stat").read_text().rsplit(")", 1)[1].split()[1]) for d in Path("/proc").iterdir()
        if d.name.isdigit() and Path(d, "stat").exists()) if p.isdigit()]

    def tree(root: int) -> float:
        own, reaped = _proc_cpu(root)
        return own + reaped + sum(_proc_cpu(pid)[0] for pid, parent in procs if parent == root)

    me = os.times()
    forkservers = [pid for pid, parent in procs if parent == os.getpid()
                   and b"forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    return {"ferretdb": sum(_proc_cpu(p)[0] for p in pids_listening(ports.MONGO)),
            "postgres": sum(tree(p) for p in pids_listening(ports.POSTGRES)),
            "client_main": me.user + me.system,
            "client_workers": sum(sum(_proc_cpu(p)) for p in forkservers)}


def _cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after[k] - before[k], 1) for k in before}


async def time_seeding(settings: Any, url: str, people: list[Any], seed: int, skip_seq: bool,
                       tuning: dict[str, int], skip_raw: bool = False) -> dict[str, Any]:
    """The seeder, then raw `insert_many` of the same documents (built beforehand with the same per-user keys,
    the build timed apart), then optionally the seeder's old shape."""
    res: dict[str, Any] = {"started_at": datetime.now(UTC).isoformat(timespec="seconds"), "tuning": tuning,
                           "load_average_1_5_15_before": [round(x, 1) for x in os.getloadavg()]}
    n = len(people)
    quiet = Console(quiet=True)
    # The seeder, as `kredete seed` runs it: its indexes (FerretDB's and the pushdown ones) made on the empty
    # tables, then the load (documents built in worker processes while earlier batches are inserted).
    store = await fresh(url, f"kredete_scale_{n}", timeout=60)
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    phases: dict[str, float] = {}
    counts = await seed_credit_store_async(settings, people, seed, quiet, db=store.db, timings=phases, **tuning)
    res["seeder_s"] = round(time.perf_counter() - t0, 2)
    res["seeder_cpu_s"] = _cpu_delta(cpu0, cpu_seconds())
    res["seeder_indexes_before_load_s"] = phases.get("indexes_s")
    res["seeder_load_s"] = phases.get("load_s")  # building (worker processes) overlapped with the inserts
    res["documents"] = counts
    res["load_average_1_5_15_after_seeder"] = [round(x, 1) for x in os.getloadavg()]
    out.print(f"seeder: {res['seeder_s']} s for {sum(counts.values())} documents (load {phases.get('load_s')} s)")
    rep = await ensure_pushdown_indexes(store.db, _backend(settings))  # present: made by the seeder
    res["pushdown_indexes"] = [{"collection": r.collection, "field": r.field, "status": r.status,
                                "size_bytes": r.size_bytes} for r in rep.rows]
    await store.close()

    if skip_raw:
        return res
    # Raw insert_many of the same documents: built first in this process with the same per-user keys (timed
    # apart), then one ordered call per collection into a schema'd database (FerretDB's indexes in place).
    # One call per collection sends up to 100k documents per message: the socket timeout must outlast it.
    raw = await fresh(url, f"kredete_scale_{n}_raw", timeout=300)
    await ensure_schema(raw.db)
    cipher = FieldCipher.from_settings(settings)
    assert cipher.keys is not None
    t0, c0 = time.perf_counter(), time.process_time()
    docs: dict[str, list[dict[str, Any]]] = {c: [] for c in SEEDED}
    plain = [_plain(p) for p in people]
    for i in range(0, n, BATCH):
        part = plain[i:i + BATCH]
        keys = cipher.keys.get_or_create([u["user_id"] for u in part])
        for coll, batch in (await _build_batch(_GivenKeys(keys), part, seed)).items():
            docs[coll] += batch
    res["build_documents_s"] = round(time.perf_counter() - t0, 2)
    res["build_documents_cpu_s"] = round(time.process_time() - c0, 1)
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    for coll in SEEDED:
        if docs[coll]:
            await raw.db[coll].insert_many(docs[coll])
    res["raw_insert_many_s"] = round(time.perf_counter() - t0, 2)
    res["raw_insert_many_cpu_s"] = _cpu_delta(cpu0, cpu_seconds())
    res["load_average_1_5_15_after_raw"] = [round(x, 1) for x in os.getloadavg()]
    del docs
    await raw.close()  # kept: the reads "without the pushdown indexes" run on this copy
    out.print(f"raw insert_many: {res['raw_insert_many_s']} s (+{res['build_documents_s']} s building the documents)")

    if not skip_seq:
        seq = await fresh(url, f"kredete_scale_{n}_seq")
        t0 = time.perf_counter()
        # the loop's shape before issue 20: built in the main process, one request at a time
        await seed_credit_store_async(settings, people, seed, quiet, db=seq.db, pushdown=False, parallel=1,
                                      batch_users=200, workers=0)
        res["seeder_one_request_at_a_time_s"] = round(time.perf_counter() - t0, 2)
        await seq.drop_database()
        await seq.close()
        out.print(f"seeder, one request at a time: {res['seeder_one_request_at_a_time_s']} s")
    return res


def _backend(settings: Any) -> str | None:
    url = settings.ferretdb_postgres_url
    return url.get_secret_value() if url else None


def _plan(explain: dict[str, Any]) -> dict[str, Any]:
    plan = (explain.get("queryPlanner") or {}).get("Plan") or {}
    return {"filter_pushdown": bool(explain.get("filterPushdown")), "sort_pushdown": bool(explain.get("sortPushdown")),
            "node": plan.get("Node Type"), "index_scans": index_scans(explain),
            "total_cost": plan.get("Total Cost"), "plan_rows": plan.get("Plan Rows")}


STAFF_QUEUE = "list_disputes (staff queue)"
PER_USER_OPS = ("get_credit_report", "get_score_history", "list_disputes (customer)")


def _keyset_plan(plan: dict[str, Any]) -> dict[str, Any]:
    nodes = plan_nodes(plan["Plan"])
    return {"served_by": "PostgreSQL keyset page (stores.mongo.backend_keyset) + point reads by _id",
            "node": plan["Plan"]["Node Type"], "nodes": [n["Node Type"] for n in nodes],
            "index_scans": [n["Index Name"] for n in nodes if n.get("Index Name")],
            "total_cost": plan["Plan"].get("Total Cost")}


async def time_reads(settings: Any, dbs: dict[str, Any], users: list[str], calls: int,
                     queue_calls: int, wanted: set[str], keysets: dict[str, BackendKeyset]) -> dict[str, Any]:
    """Each call on every database in turn (order alternating), so the shared machine's load hits all alike.

    `keysets`: the databases whose staff queue is served from PostgreSQL's index (the others: the find)."""
    repos = {}
    encs = []
    for label, db in dbs.items():
        enc = await open_field_encryption(db, settings.field_encryption_master_key.get_secret_value())
        encs.append(enc)
        repos[label] = (CreditReportRepository(db, encryption=enc), ScoreHistoryRepository(db),
                        DisputeRepository(db, encryption=enc, keyset=keysets.get(label)))
    staff = RowScope.everyone()
    ops: dict[str, tuple[Callable[[tuple, str], Awaitable[Any]], int]] = {
        "get_credit_report": (lambda r, u: r[0].latest(RowScope.users(u), u), calls),
        "get_score_history": (lambda r, u: r[1].series(RowScope.users(u), u), calls),
        "list_disputes (customer)": (lambda r, u: r[2].list(RowScope.users(u), user_id=u), calls),
        STAFF_QUEUE: (lambda r, u: r[2].queue(staff), queue_calls),
    }
    ops = {k: v for k, v in ops.items() if k in wanted}
    res: dict[str, Any] = {label: {} for label in dbs}
    try:
        for name, (op, k) in ops.items():
            sample = random.Random(name).sample(users, min(k + 3, len(users)))
            ms: dict[str, list[float]] = {label: [] for label in dbs}
            for i, u in enumerate(sample):
                order = list(dbs) if i % 2 == 0 else list(reversed(dbs))
                for label in order:
                    t0 = time.perf_counter()
                    await op(repos[label], u)
                    if i >= 3:  # the first calls warm connections, plans and caches
                        ms[label].append((time.perf_counter() - t0) * 1000)
            for label in dbs:
                res[label][name] = summary(ms[label])
            out.print(f"  {name}: " + ", ".join(f"{label} p50 {res[label][name]['p50_ms']} ms" for label in dbs))
    finally:
        for enc in encs:
            await enc.close()
    u = users[0]
    shapes = {"get_credit_report": ("credit_reports", {"user_id": {"$eq": u}}),
              "get_score_history": ("score_history", {"user_id": {"$eq": u}}),
              "list_disputes (customer)": ("dispute_cases", {"user_id": {"$eq": u}}),
              "list_disputes (staff queue)": ("dispute_cases", {})}
    for label, db in dbs.items():
        for name, (coll, flt) in shapes.items():
            if name not in ops:
                continue
            if name == STAFF_QUEUE and label in keysets:
                res[label][name]["explain"] = _keyset_plan(await keysets[label].explain(coll, "updated_at"))
            else:
                res[label][name]["explain"] = _plan(await explain_find(db, coll, flt))
    return res


async def time_queue(repo: DisputeRepository, calls: int) -> dict[str, Any]:
    """The keyset queue alone: page 1, page 10, status `opened` and its page 2 (cursors fetched beforehand)."""
    staff = RowScope.everyone()
    cursor = None
    for _ in range(9):
        _, cursor = await repo.queue(staff, cursor=cursor)
    _, opened_next = await repo.queue(staff, status="opened")
    cases: dict[str, Callable[[], Awaitable[Any]]] = {
        "page 1": lambda: repo.queue(staff),
        "page 10 (cursor)": lambda: repo.queue(staff, cursor=cursor),
        "status=opened, page 1": lambda: repo.queue(staff, status="opened"),
        "status=opened, page 2 (cursor)": lambda: repo.queue(staff, status="opened", cursor=opened_next),
        "limit 100": lambda: repo.queue(staff, limit=100),
    }
    res: dict[str, Any] = {}
    for name, call in cases.items():
        ms = []
        for i in range(calls + 3):
            t0 = time.perf_counter()
            await call()
            if i >= 3:  # the first calls warm connections, plans and caches
                ms.append((time.perf_counter() - t0) * 1000)
        res[name] = {**summary(ms), "rows": len((await call())[0])}
        out.print(f"  keyset queue, {name}: p50 {res[name]['p50_ms']} ms, p99 {res[name]['p99_ms']} ms")
    assert repo.keyset is not None
    sample = await repo.keyset.page("dispute_cases", "updated_at", limit=1)
    after = Position(sample[0].value, sample[0].id) if sample else None
    res["plans"] = {
        "page 1": _keyset_plan(await repo.keyset.explain("dispute_cases", "updated_at")),
        "cursor": _keyset_plan(await repo.keyset.explain("dispute_cases", "updated_at", after=after)),
        "status": _keyset_plan(await repo.keyset.explain("dispute_cases", "updated_at", eq={"status": "opened"},
                                                         after=after)),
        "point read by _id": _plan(await explain_find(repo.db, "dispute_cases",
                                                      {"_id": {"$eq": after.id if after else ""}})),
    }
    return res


async def run(args: argparse.Namespace) -> None:
    settings = resolve()
    url = settings.mongo_url.get_secret_value()
    n = args.users
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    entry = results.setdefault("sizes", {}).setdefault(str(n), {})
    people = [person(args.seed, i) for i in range(n)]
    ids = [str(p.user_id) for p in people]

    # Long socket timeouts: the staff queue without an index reads every dispute, on a loaded shared machine.
    store = await MongoStore(url, f"kredete_scale_{n}", timeout=60).connect()
    plain = await MongoStore(url, f"kredete_scale_{n}_raw", timeout=60).connect()
    finished = await store.db["load_progress"].count_documents({}) if not args.reseed else 0
    # The raw copy is complete when its last collection holds the last user's documents (FerretDB counts by
    # reading every document: too slow to compare counts).
    same = await plain.db[SEEDED[-1]].find_one({"user_id": {"$eq": ids[-1]}}) is not None
    if not (finished >= -(-n // BATCH) and same and "seeding" in entry):
        check_disk(n, 1 + (not args.skip_raw) + (not args.skip_seq))
        tuning = {"workers": args.workers, "parallel": args.parallel, "batch_docs": args.batch_docs,
                  "batch_users": args.batch_users}
        entry["seeding"] = await time_seeding(settings, url, people, args.seed, args.skip_seq, tuning,
                                              args.skip_raw)
        if args.seed_only or args.skip_raw:  # the reads need the raw copy
            _write(results)
            return
        _write(results)
    else:
        out.print(f"reusing kredete_scale_{n} ({finished} checkpointed batches) and kredete_scale_{n}_raw")
    backend = _backend(settings)
    no_pushdown = [s.__class__(**{**s.__dict__, "pushdown": ()}) for s in SPECS]
    # The raw copy keeps FerretDB's own (btree) indexes only: the state before issue 20.
    await ensure_schema(plain.db)
    await PushdownIndexer(plain.db, backend, specs=no_pushdown).ensure()
    await ensure_pushdown_indexes(store.db, backend)
    wanted = set(PER_USER_OPS) | {STAFF_QUEUE} if args.ops == "all" else {STAFF_QUEUE}
    keyset = BackendKeyset(backend, store.db.name, timeout=60) if backend else None
    out.print("reads, interleaved (without: FerretDB's btree indexes only; with: + the pushdown indexes):")
    got = await time_reads(settings, {"without": plain.db, "with": store.db}, ids, args.calls, args.queue_calls,
                           wanted, {"with": keyset} if keyset else {})
    reads = entry.setdefault("reads", {})
    now_, load = datetime.now(UTC).isoformat(timespec="seconds"), [round(x, 1) for x in os.getloadavg()]
    for label, key in (("without", "without_pushdown_indexes"), ("with", "with_pushdown_indexes")):
        for name, row in got[label].items():  # merged per call: `--ops queue` keeps the other calls' results
            reads.setdefault(key, {})[name] = {**row, "measured_at": now_, "load_average_1_5_15": load}
    if keyset is not None:
        out.print("the keyset queue alone (seeded copy):")
        q = await time_queue(DisputeRepository(store.db, keyset=keyset), args.queue_page_calls)
        entry["staff_queue_keyset"] = {**q, "dispute_cases": (entry.get("seeding") or {}).get("documents", {})
                                       .get("dispute_cases"), "measured_at": datetime.now(UTC).isoformat(
                                           timespec="seconds"), "load_average_1_5_15": [round(x, 1) for x in
                                                                                        os.getloadavg()]}
        await keyset.close()
    if args.ops == "all":  # the whole size's reads (with --ops, each re-measured call carries its own)
        entry["measured_at"] = now_
        entry["load_average_1_5_15"] = load  # the machine is shared
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "server": "FerretDB 1.24 on PostgreSQL 15 (local stack), shared machine",
                          "plan_cache_mode": "force_custom_plan (set on FerretDB's database)"}
    _write(results)
    await store.close()
    await plain.close()

    table = Table(title=f"credit store at {n} users (repository calls, ms)")
    for col in ("call", "p50 before", "p99 before", "p50 after", "p99 after", "scan before", "scan after"):
        table.add_column(col)
    b, a = reads["without_pushdown_indexes"], reads["with_pushdown_indexes"]
    for name in b:
        table.add_row(name, str(b[name]["p50_ms"]), str(b[name]["p99_ms"]), str(a[name]["p50_ms"]),
                      str(a[name]["p99_ms"]), ",".join(b[name]["explain"]["index_scans"]) or b[name]["explain"]["node"],
                      ",".join(a[name]["explain"]["index_scans"]) or a[name]["explain"]["node"])
    out.print(table)
    out.print(f"written: {RESULTS.relative_to(ROOT)}")


def _write(results: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def main() -> None:
    if "--mcp" in sys.argv[1:]:  # issue 20's whole benchmark (every MCP tool over HTTP at 1k/10k/100k users)
        import runpy

        # run as a module, not imported: bench.scale_mcp imports this module's BYTES_PER_USER (no cycle)
        sys.argv = [sys.argv[0], *(a for a in sys.argv[1:] if a != "--mcp")]
        runpy.run_module("bench.scale_mcp", run_name="__main__", alter_sys=True)
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=5000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--calls", type=int, default=100, help="timed calls per per-user read")
    p.add_argument("--queue-calls", type=int, default=10,
                   help="timed calls of the staff queue on both copies (the find reads every dispute)")
    p.add_argument("--queue-page-calls", type=int, default=50, help="timed calls of each keyset queue page")
    p.add_argument("--ops", choices=("all", "queue"), default="all",
                   help="reads to measure (queue: the staff queue only; the other results are kept)")
    p.add_argument("--skip-seq", action="store_true", help="skip the one-request-at-a-time seeding run")
    p.add_argument("--reseed", action="store_true", help="seed again even if the database is complete")
    p.add_argument("--seed-only", action="store_true", help="time the seeding, skip the reads")
    p.add_argument("--skip-raw", action="store_true",
                   help="skip the raw insert_many baseline (it holds every document in memory; implies --seed-only)")
    p.add_argument("--workers", type=int, default=WORKERS, help="seeder: processes building the documents")
    p.add_argument("--parallel", type=int, default=PARALLEL, help="seeder: insert requests in flight")
    p.add_argument("--batch-docs", type=int, default=BATCH_DOCS, help="seeder: documents per insert")
    p.add_argument("--batch-users", type=int, default=BATCH, help="seeder: users per built, checkpointed batch")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
