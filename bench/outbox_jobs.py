"""The credit store's background jobs at size (issue 20): each periodic query the old way and the new way.

    KREDETE_STACK_PROFILE=lean python -m bench.outbox_jobs [--sizes 10000 100000] [--events 200000]

Per seeded size (the `scale<N>` datasets of `bench/scale_mcp.py`, which must exist) and on a scratch database
filled with `--events` outbox events (7 days of writes, the oldest 1% a day older: what a prune deletes), every
read of `Outbox.reconcile`, `Outbox.prune`, `OutboxConsumer.poll`, `Outbox.emit`'s next seq, the monitoring's
outbox lag and the retention job's expired-document counts is timed twice on the same data:

- before: the find FerretDB 1.24 is sent (`use_keyset=False`; on MongoDB the only path), with FerretDB's
  `explain` (which parts it pushed down; PostgreSQL's plan of what it did push down);
- after: the read through FerretDB's PostgreSQL btree index (`stores.mongo.backend_keyset`), with its plan.

and the two answers are compared (`equal`). The new PostgreSQL indexes (`CollectionSpec.ranges`, `_id` pushdown
of the TTL collections) are built first, CONCURRENTLY, as `kredete mongo ensure-indexes` does; their build time
is recorded. Writes: the scratch database only (an emit, a consumer checkpoint, a prune); the seeded datasets
are read (a retention dry run, the reconciliation's reads without its re-emits).
Results: bench/results/outbox_jobs.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scale_mcp import dataset  # noqa: E402
from stores.mongo.backend_keyset import BackendKeyset, Cond  # noqa: E402
from stores.mongo.cdc import TOPICS, Outbox, OutboxConsumer  # noqa: E402
from stores.mongo.client import MongoStore  # noqa: E402
from stores.mongo.collections import (  # noqa: E402
    ACTION_PLANS,
    CREDIT_REPORTS,
    DISPUTE_CASES,
    OUTBOX,
    SPEC_BY_NAME,
    TTL_COLLECTIONS,
    ensure_schema,
)
from stores.mongo.documents import now  # noqa: E402
from stores.mongo.pushdown import PushdownIndexer, explain_find, plan_nodes  # noqa: E402
from stores.mongo.retention import purge_expired  # noqa: E402
from stores.monitoring.mongo import MongoStats  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "outbox_jobs.json"
SCRATCH_DB = "kredete_outbox_bench"
#: The MCP server's reconciliation window (`KREDETE_OUTBOX_RECONCILE_LOOKBACK_S`).
LOOKBACK = timedelta(seconds=3600)
REPEAT_FAST = 5


async def timed(fn: Callable[[], Awaitable[Any]], repeat: int = 1) -> tuple[float, Any]:
    """Median seconds of `repeat` runs (one for the slow old paths: CPU is shared) and the last answer."""
    times, value = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = await fn()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times), 4), value


def ferret_plan(explain: dict[str, Any]) -> dict[str, Any]:
    nodes = plan_nodes((explain.get("queryPlanner") or {}).get("Plan") or {})
    return {"filter_pushdown": explain.get("filterPushdown"), "sort_pushdown": explain.get("sortPushdown"),
            "limit_pushdown": explain.get("limitPushdown"), "nodes": [n.get("Node Type") for n in nodes],
            "index_scans": [n["Index Name"] for n in nodes if n.get("Index Name")]}


def pg_plan(plan: dict[str, Any]) -> dict[str, Any]:
    nodes = plan_nodes(plan["Plan"])
    return {"nodes": [n["Node Type"] for n in nodes], "index_scans": [n["Index Name"] for n in nodes
                                                                       if n.get("Index Name")]}


async def op(name: str, old: Callable[[], Awaitable[Any]], new: Callable[[], Awaitable[Any]],
             old_explain: Awaitable[dict[str, Any]], new_explain: Awaitable[dict[str, Any]],
             old_repeat: int = 1) -> dict[str, Any]:
    before, a = await timed(old, old_repeat)
    after, b = await timed(new, REPEAT_FAST)
    row = {"before_s": before, "after_s": after, "equal": a == b, "answer": _short(b),
           **({} if a == b else {"before_answer": _short(a)}),
           "before_plan": ferret_plan(await old_explain), "after_plan": pg_plan(await new_explain)}
    print(f"  {name:38} before {before:9.3f} s  after {after:7.4f} s  equal={a == b}  "
          f"{row['before_plan']['nodes'][:1]} -> {row['after_plan']['index_scans'][:1]}", flush=True)
    return row


def _short(v: Any) -> Any:
    if isinstance(v, (list, set, tuple)):
        return f"{len(v)} items"
    if isinstance(v, dict):
        return {k: _short(x) for k, x in list(v.items())[:8]}
    return v if isinstance(v, (int, float, str, bool)) or v is None else str(v)


async def connect(settings: Any, db_name: str | None = None) -> MongoStore:
    backend = settings.ferretdb_postgres_url.get_secret_value()
    return await MongoStore(settings.mongo_url.get_secret_value(), db_name or settings.mongo_db, timeout=120,
                            backend_url=backend).connect()


async def build_indexes(store: MongoStore, settings: Any) -> list[dict[str, Any]]:
    report = await PushdownIndexer(store.db, settings.ferretdb_postgres_url.get_secret_value()).ensure()
    return [{"collection": r.collection, "field": r.field, "index": r.index, "seconds": r.seconds,
             "size_bytes": r.size_bytes} for r in report.created]


async def dataset_ops(store: MongoStore) -> dict[str, Any]:
    db, ks = store.db, store.keyset
    assert ks is not None
    old, new = Outbox(db, use_keyset=False), Outbox(db)
    since = now() - LOOKBACK
    out: dict[str, Any] = {"documents": {c: await db[c].estimated_document_count()
                                         for c in (DISPUTE_CASES, CREDIT_REPORTS, ACTION_PLANS, *TTL_COLLECTIONS)}}
    windows = (("1h", since),)
    for coll, fld, fields in ((DISPUTE_CASES, "updated_at", ("user_id", "status", "revision", "last_event_id")),
                              (CREDIT_REPORTS, "created_at", ("user_id", "bureau", "version")),
                              (ACTION_PLANS, "created_at", ("user_id", "version"))):
        for label, t in windows:
            def norm(rows: list[dict[str, Any]], fs: tuple[str, ...] = fields) -> list[tuple[Any, ...]]:
                return sorted(tuple(r.get(f) for f in ("_id", *fs)) for r in rows)

            out[f"reconcile {coll}.{fld} >= now-{label}"] = await op(
                f"reconcile {coll} {label}",
                lambda c=coll, f=fld, fs=fields, t=t: _norm(old._changed(c, f, t, fs), norm),
                lambda c=coll, f=fld, fs=fields, t=t: _norm(new._changed(c, f, t, fs), norm),
                explain_find(db, coll, {fld: {"$gte": t}}), ks.explain_range(coll, fld, [Cond(fld, ">=", t)]))
    cutoff = now()
    for coll in TTL_COLLECTIONS:
        fld = SPEC_BY_NAME[coll].ttl_field
        assert fld
        out[f"retention {coll}.{fld} < now (dry run)"] = await op(
            f"retention {coll}",
            lambda c=coll: purge_expired(db, at=cutoff, collections=(c,), outbox=False, dry_run=True,
                                         use_keyset=False),
            lambda c=coll: purge_expired(db, at=cutoff, collections=(c,), outbox=False, dry_run=True),
            explain_find(db, coll, {fld: {"$lt": cutoff}}), ks.explain_range(coll, fld, [Cond(fld, "<", cutoff)]))
    return out


async def _norm(rows: Awaitable[list[dict[str, Any]]], norm: Callable[[Any], Any]) -> Any:
    return norm(await rows)


async def fill_outbox(store: MongoStore, events: int) -> float:
    """`events` outbox events over 7 days (the oldest 1% a day older), seq 1..events, in a fresh collection."""
    coll = store.db[OUTBOX]
    await store.db.drop_collection(OUTBOX)
    await ensure_schema(store.db)
    end = now() - timedelta(minutes=5)
    old = events // 100
    span = timedelta(days=7) / (events - old)
    t0 = time.perf_counter()
    batch = []
    for seq in range(1, events + 1):
        at = end - timedelta(days=8) + seq * timedelta(days=1) / old if seq <= old else \
            end - (events - seq) * span
        topic = TOPICS[seq % len(TOPICS)]
        batch.append({"_id": f"{topic}:bench-{seq}:1", "topic": topic, "op": "update", "document_id": f"bench-{seq}",
                      "user_id": None, "at": at, "seq": seq, "data": {"status": "opened", "revision": 1}})
        if len(batch) == 2000:
            await coll.insert_many(batch, ordered=False)
            batch = []
    if batch:
        await coll.insert_many(batch, ordered=False)
    return round(time.perf_counter() - t0, 1)


async def outbox_ops(store: MongoStore) -> dict[str, Any]:
    db, ks = store.db, store.keyset
    assert ks is not None
    old, new = Outbox(db, use_keyset=False), Outbox(db)
    last = await new.last_seq()
    out: dict[str, Any] = {"events": last}
    # Two consumers: one 100 events behind the head (a poll returns a full batch), one a day behind (the lag).
    for name, behind in (("bench-head", 100), ("bench-lagging", last // 7)):
        await db["cdc_checkpoints"].update_one({"_id": f"outbox:{name}"}, {"$set": {"seq": last - behind}},
                                               upsert=True)
    head = last - 100
    out["next seq (emit's _last_seq)"] = await op(
        "next seq", old.last_seq, new.last_seq,
        explain_find(db, OUTBOX, {}, sort={"seq": -1}, limit=1), ks.explain_range(OUTBOX, "seq", order="desc",
                                                                                  limit=1))

    async def poll(use: bool) -> list[str]:
        consumer = OutboxConsumer(db, "bench-head", use_keyset=use)
        return [e.event_id for e in await consumer.poll()]  # not committed: each poll reads the same batch

    out["consumer poll (seq > checkpoint, 100)"] = await op(
        "consumer poll", lambda: poll(False), lambda: poll(True),
        explain_find(db, OUTBOX, {"seq": {"$gt": head}}, sort={"seq": 1}, limit=100),
        ks.explain_range(OUTBOX, "seq", [Cond("seq", ">", head)], limit=100))
    stats = MongoStats(store)

    async def lag(use: bool) -> list[tuple[str, int, int, int]]:
        rows = await stats.outbox_lag(at=now(), use_keyset=use)
        return [(c.consumer, c.checkpoint, c.newest, c.events) for c in rows]

    out["monitoring outbox_lag"] = await op(
        "outbox lag", lambda: lag(False), lambda: lag(True),
        explain_find(db, OUTBOX, {"seq": {"$gt": last // 7}}, sort={"seq": 1}, limit=1),
        ks.explain_range(OUTBOX, "seq", [Cond("seq", ">", last - last // 7)], limit=1))
    ids = [f"{TOPICS[s % 3]}:bench-{s}:1" for s in range(last - 999, last + 1, 2)] + [f"lost:{n}" for n in range(500)]
    out["reconcile _missing (1000 ids, $in)"] = await op(
        "reconcile _missing", lambda: old._missing(ids), lambda: new._missing(ids),
        explain_find(db, OUTBOX, {"_id": {"$in": ids}}), _ids_plan(ks, ids))
    at = now()  # one cutoff for both (events age meanwhile)
    cutoff = at - timedelta(days=7)
    out["prune (dry run)"] = await op(
        "prune dry run", lambda: old.prune(dry_run=True, at=at), lambda: new.prune(dry_run=True, at=at),
        explain_find(db, OUTBOX, {"seq": {"$lte": last - 1}, "at": {"$lt": cutoff}}, sort={"seq": -1}, limit=1),
        ks.explain_range(OUTBOX, "seq", [Cond("seq", "<=", last - 1), Cond("at", "<", cutoff)], order="desc",
                         limit=1))
    for name in ("bench-head", "bench-lagging"):
        await db["cdc_checkpoints"].delete_one({"_id": f"outbox:{name}"})
    t, n = await timed(new.prune)
    out["prune (delete)"] = {"after_s": t, "deleted": n}
    print(f"  prune: deleted {n} in {t:.2f} s", flush=True)
    t, ev = await timed(lambda: new.emit("dispute_cases", "update", "bench-emit", None, {}, event_id=f"emit:{now()}"))
    t_old, ev_old = await timed(lambda: old.emit("dispute_cases", "update", "bench-emit", None, {},
                                                 event_id=f"emit-old:{now()}"))
    out["emit (one event)"] = {"before_s": t_old, "after_s": t, "seqs": [ev_old.seq if ev_old else None,
                                                                        ev.seq if ev else None]}
    print(f"  emit: before {t_old:.3f} s after {t:.4f} s", flush=True)
    return out


async def _ids_plan(ks: BackendKeyset, ids: list[str]) -> dict[str, Any]:
    """The plan of `existing_ids` (`_id = ANY(...)` on the `_id` index)."""
    pool = await ks._get_pool()
    async with pool.acquire() as conn:
        table = await ks._table(conn, OUTBOX)
        plan = await conn.fetchval(f'EXPLAIN (FORMAT JSON) SELECT 1 FROM "{ks.db_name}"."{table}" '
                                   "WHERE (_jsonb -> '_id') = ANY($1::jsonb[])", [json.dumps(i) for i in ids])
    return json.loads(plan)[0]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10000, 100000])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--skip-outbox", action="store_true")
    args = ap.parse_args()
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.update({"machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
                    "at": now().isoformat(), "lookback_s": LOOKBACK.total_seconds()})
    sizes = results.setdefault("sizes", {})
    for n in args.sizes:
        settings = dataset(n).settings()
        store = await connect(settings)
        try:
            print(f"{n} users ({settings.mongo_db})", flush=True)
            built = await build_indexes(store, settings)
            sizes[str(n)] = {"indexes_built": built, **await dataset_ops(store)}
        finally:
            await store.close()
        RESULTS.write_text(json.dumps(results, indent=1, default=str) + "\n")
    if not args.skip_outbox:
        settings = dataset(args.sizes[0] if args.sizes else 10000).settings()
        store = await connect(settings, SCRATCH_DB)
        try:
            print(f"outbox of {args.events} events ({SCRATCH_DB})", flush=True)
            fill = await fill_outbox(store, args.events)
            await build_indexes(store, settings)
            results["outbox"] = {"fill_s": fill, **await outbox_ops(store)}
        finally:
            await store.close()
        RESULTS.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    asyncio.run(main())
