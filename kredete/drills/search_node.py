"""Node-loss drill of the search cluster: kill -9 one OpenSearch node under load, restart it, measure.

The load runs for the whole drill, on indexes of a prefix of its own (dropped at the end):

* `search_knowledge`: the retriever the tool calls (hybrid kNN + BM25, a customer's row scope), over the
  knowledge base and synthetic customer documents;
* audit-log search: the free-text path of `search_audit_logs` (BM25 over the audit-log index, compliance scope);
* indexing from the outbox follower: disputes and action plans written to a scratch credit-store database
  through the repositories, whose change events the follower applies to the knowledge and disputes indexes;
* direct writes of audit-log documents (what `kredete search sync` does), each acknowledged or failed.

Then it kills one node with SIGKILL (default: the node holding the knowledge index's primary shard), waits,
restarts it and waits for green. It measures the queries that failed and over which window, acknowledged writes
missing at the end (audit documents OpenSearch acknowledged, follower events committed), the seconds from the
kill to green, and kNN recall@10 against exact search before and after. The last line printed is
`failed_queries=<N> lost_acknowledged=<N> green_after_s=<s>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from kredete.stack.opensearch_cluster import SearchCluster


class DrillConfig(BaseModel):
    node: str = Field("primary", description="node to kill: a name, `primary` (holds the knowledge index's "
                                             "primary shard) or `manager` (the elected cluster manager)")
    docs: int = Field(300, ge=0, description="synthetic customer documents besides the knowledge base")
    warmup_s: float = Field(10.0, ge=0)
    down_s: float = Field(20.0, ge=0, description="how long the node stays dead")
    after_s: float = Field(10.0, ge=0, description="load kept after green")
    readers: int = Field(2, ge=1, le=16, description="concurrent search_knowledge loops (plus one audit loop)")
    write_every_s: float = Field(0.5, gt=0, description="one dispute or action plan written every so often")
    audit_every_s: float = Field(0.25, gt=0, description="one batch of 5 audit documents every so often")
    recall_queries: int = Field(30, ge=1)
    green_timeout_s: float = Field(300.0, gt=0)
    catch_up_timeout_s: float = Field(180.0, gt=0)
    replicas: int | None = Field(None, ge=1, description="replicas of the drill's indexes [KREDETE_SEARCH_REPLICAS]")


class QueryRecord(BaseModel):
    at: float  # seconds since the kill (negative before it)
    kind: str
    ok: bool
    ms: float
    error: str | None = None


class DrillResult(BaseModel):
    cluster: str
    nodes: int
    killed: str
    killed_role: str
    replicas: int
    memory_mb: dict[str, float]
    queries: dict[str, int]
    failed_queries: int
    failed_by_kind: dict[str, int]
    failures: list[str]
    failure_window_s: tuple[float, float] | None
    worst_status_after_kill: str
    #: (seconds since the kill, status) at each change seen from the surviving nodes
    status_timeline: list[tuple[float, str]]
    restart_s: float
    #: seconds from the kill until the cluster was first green again: by re-replicating onto the surviving
    #: nodes (after index.unassigned.node_left.delayed_timeout, 1 min) or by the node's return, whichever came first
    green_after_s: float
    #: seconds from the kill until green with the restarted node back in the cluster
    green_all_nodes_s: float
    audit_writes: dict[str, int]
    follower: dict[str, Any]
    lost_acknowledged: int
    lost_ids: list[str]
    recall_at_10: dict[str, float]
    latency_ms: dict[str, dict[str, float]]
    started_at: str

    def line(self) -> str:
        return (f"failed_queries={self.failed_queries} lost_acknowledged={self.lost_acknowledged} "
                f"green_after_s={self.green_after_s:.1f}")


def _synthetic_docs(n: int, seed: int = 11) -> list[Any]:
    """Customer documents made of knowledge-base sentences, spread over 20 users (deterministic)."""
    from retrieval.documents import SourceDoc
    from retrieval.kb import load_articles

    rng = random.Random(seed)
    sentences = [s.strip() for a in load_articles() for s in re.split(r"(?<=[.!?])\s+", a.text)
                 if len(s.split()) > 4]
    users = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(20)]
    return [SourceDoc(source_id=f"drill-{i:05d}", doc_type="document", user_id=rng.choice(users),
                      title=f"Customer note {i}", text=" ".join(rng.sample(sentences, rng.randint(3, 6))))
            for i in range(n)]


def _pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))], 2)


async def run(cfg: DrillConfig, *, cluster: SearchCluster, search_url: str, mongo_url: str, master_key: str,
              say: Callable[[str], None] = print) -> DrillResult:
    """Run the drill against `cluster` (reached at `search_url`); the credit store is a scratch database of
    the MongoDB at `mongo_url` (field encryption under `master_key`)."""
    from guards.redaction import redact
    from retrieval.changes import FEED_NAME, FollowStats, follow
    from retrieval.encoder import SentenceTransformerEncoder
    from retrieval.index_sync import DocIndexer
    from retrieval.ingest import Ingestor
    from retrieval.kb import load_articles
    from retrieval.scoped_search import search_index
    from retrieval.service import KnowledgeRetriever
    from retrieval.sources import KbSource, ListSource, Record
    from stores.mongo import MongoStore
    from stores.mongo.collections import ensure_schema
    from stores.mongo.credit import ActionPlanRepository, DisputeRepository
    from stores.mongo.documents import ActionPlan, ActionStep, Dispute
    from stores.mongo.encryption import open_field_encryption
    from stores.scope import AuditScope, RowScope
    from stores.search import SearchStore
    from stores.search.catalog import AUDIT_LOGS, CHUNKS, DISPUTES

    prefix = f"kredete-drill-{uuid.uuid4().hex[:6]}"
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    search = await SearchStore(search_url, prefix=prefix, replicas=cfg.replicas).connect()
    replicas = search.replica_count()
    if replicas < 1:
        await search.close()
        raise ValueError("the drill needs at least one replica (KREDETE_SEARCH_REPLICAS >= 1): with none, the "
                         "killed node takes its shards with it")
    mongo = await MongoStore(mongo_url, f"kredete_drill_{prefix[-6:]}").connect()
    stop = asyncio.Event()
    tasks: list[asyncio.Task] = []
    try:
        await ensure_schema(mongo.db)
        enc = await open_field_encryption(mongo.db, master_key, mode="envelope")
        health = cluster.health()
        memory = cluster.memory_mb()
        say(f"cluster {health['cluster_name']}: {health['status']}, {health['number_of_nodes']} nodes, "
            f"memory {sum(memory.values()):.0f} MB ({', '.join(f'{k} {v:.0f}' for k, v in memory.items())})")

        # --- corpus ---------------------------------------------------------------------------------
        encoder = SentenceTransformerEncoder(batch_size=32)
        ingestor = Ingestor(search, encoder, redact=redact, batch_docs=64)
        await ingestor.ensure_indexes()
        await ingestor.run(KbSource(), resume=False)
        docs = _synthetic_docs(cfg.docs)
        if docs:
            await ingestor.run(ListSource("drill", [Record(d.source_key, [d]) for d in docs]), resume=False)
        audit = DocIndexer(search, AUDIT_LOGS, redact=redact)
        await audit.ensure()
        base = datetime.now(UTC) - timedelta(days=1)
        actions = ["search_transactions", "get_credit_report", "list_disputes", "search_knowledge"]
        reasons = ["customer asked about a failed payout", "chargeback identity check", "dispute follow-up",
                   "score change explanation", "kyc document review"]
        seq = iter(range(1, 10**9))

        def audit_row() -> dict[str, Any]:
            i = next(seq)
            return {"id": i, "occurred_at": base + timedelta(seconds=i), "actor_subject": f"agent-{i % 7}",
                    "actor_role": "support_agent", "actor_user_id": None, "action": actions[i % len(actions)],
                    "resource": "tool", "args_digest": f"{i:064x}", "decision": "allowed",
                    "reason": reasons[i % len(reasons)], "rows_returned": i % 20, "redactions": {}, "latency_ms": 5,
                    "request_id": str(uuid.UUID(int=i))}

        await audit.index_rows([audit_row() for _ in range(200)])
        alias = search.index_name(CHUNKS)
        await search.call(search.os.indices.refresh(index=f"{prefix}-*"))
        n_chunks = (await search.call(search.os.count(index=alias)))["count"]
        await search.cluster_health(wait_for="green", timeout_s=cfg.green_timeout_s)
        say(f"indexes {prefix}-*: {n_chunks} knowledge chunks, {replicas} replica(s) each; cluster green")

        retriever = KnowledgeRetriever(search, encoder)
        await retriever.index_method()
        queries = [a.title for a in load_articles()] + [d.text.split(".")[0] for d in docs[:40]]
        vectors = {q: v.tolist() for q, v in zip(queries, await encoder.embed_documents(queries), strict=True)}

        class _Cached:  # the retriever's encoder, answering from the vectors embedded above (as a warm cache)
            name, dim = encoder.name, encoder.dim

            async def embed_query(self, q: str) -> Any:
                import numpy as np

                return np.asarray(vectors[q]) if q in vectors else await encoder.embed_query(q)

        retriever.encoder = _Cached()  # type: ignore[assignment]
        scope = RowScope.users(docs[0].user_id) if docs else RowScope.users(str(uuid.uuid4()))

        async def recall() -> float:
            s = retriever.searcher
            out = []
            for q in queries[:cfg.recall_queries]:
                approx = {h.id for h in await s.knn(vectors[q], 10, None)}
                exact = {h.id for h in await s.exact(vectors[q], 10, None)}
                out.append(len(approx & exact) / max(1, len(exact)))
            return round(statistics.mean(out), 4)

        recall_before = await recall()
        say(f"kNN recall@10 vs exact before: {recall_before:.3f} ({cfg.recall_queries} queries)")

        # --- load -----------------------------------------------------------------------------------
        log: list[QueryRecord] = []  # `at`: monotonic time until the end, then seconds since the kill

        async def loop(kind: str, call: Callable[[int], Any], pause: float) -> None:
            i = 0
            while not stop.is_set():
                t = time.monotonic()
                try:
                    await call(i)
                    log.append(QueryRecord(at=t, kind=kind, ok=True, ms=(time.monotonic() - t) * 1000))
                except Exception as exc:  # every failure is a result of the drill
                    log.append(QueryRecord(at=t, kind=kind, ok=False, ms=(time.monotonic() - t) * 1000,
                                           error=f"{type(exc).__name__}: {exc}"[:300]))
                i += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)

        async def knowledge(i: int) -> None:
            await retriever.search(queries[i % len(queries)], scope, k=5, mode="hybrid")

        compliance = AuditScope(role="compliance_officer", subject="drill")
        words = ["payout", "chargeback", "dispute", "score", "kyc", "identity", "review"]

        async def audit_search(i: int) -> None:
            await search_index(search, AUDIT_LOGS, compliance, text=words[i % len(words)], k=10)

        acked: list[str] = []
        audit_failed = [0]

        async def audit_write(_: int) -> None:
            rows = [audit_row() for _ in range(5)]
            try:
                _n, skipped = await audit.index_rows(rows)
            except Exception:
                audit_failed[0] += len(rows)
                raise
            bad = {s.split(":", 1)[0] for s in skipped}
            acked.extend(str(r["id"]) for r in rows if str(r["id"]) not in bad)
            audit_failed[0] += len(bad)
            if bad:
                raise RuntimeError(f"{len(bad)} audit documents refused: {sorted(skipped)[:2]}")

        disputes = DisputeRepository(mongo.db, encryption=enc)
        plans = ActionPlanRepository(mongo.db)
        written: dict[str, str] = {}  # id -> kind

        async def credit_write(i: int) -> None:
            user = str(uuid.uuid4())
            if i % 2:
                case = await disputes.create(Dispute(user_id=user, report_id=str(uuid.uuid4()), bureau="crc_ng",
                                                     reason="incorrect_balance",
                                                     notes=f"Drill dispute {i}: the balance on the card is wrong."))
                written[case.id] = "dispute"
            else:
                plan = await plans.add_version(ActionPlan(user_id=user, horizon_months=6,
                                                          summary=f"Drill plan {i}: pay the card below 30 percent.",
                                                          steps=[ActionStep(title="Lower utilisation",
                                                                            factor="utilization")]))
                written[plan.id] = "action_plan"

        stats = FollowStats()
        tasks.append(asyncio.create_task(follow(ingestor, mongo.db, stop, stats=stats, max_backoff=2.0)))
        for r in range(cfg.readers):
            tasks.append(asyncio.create_task(loop(f"search_knowledge#{r}", knowledge, 0.05)))
        tasks.append(asyncio.create_task(loop("search_audit_logs", audit_search, 0.1)))
        tasks.append(asyncio.create_task(loop("write:audit", audit_write, cfg.audit_every_s)))
        tasks.append(asyncio.create_task(loop("write:credit-store", credit_write, cfg.write_every_s)))
        say(f"load: {cfg.readers} search_knowledge loop(s), audit-log search, audit writes, outbox follower; "
            f"warming up {cfg.warmup_s:.0f}s")
        await asyncio.sleep(cfg.warmup_s)
        # The follower creates its indexes when the load starts; a replica still initialising protects
        # nothing, so the node is killed only once every copy is started (a green cluster), load running.
        await search.cluster_health(wait_for="green", timeout_s=cfg.green_timeout_s)

        # --- the fault ------------------------------------------------------------------------------
        target, role = await asyncio.to_thread(_target, cluster, cfg.node, alias)
        victim = cluster.node(target)
        kill_at = time.monotonic()
        pid = await asyncio.to_thread(cluster.kill, target)
        say(f"kill -9 {target} (pid {pid}, {role}); waiting {cfg.down_s:.0f}s")
        timeline: list[tuple[float, str]] = [(0.0, "green")]

        async def watch() -> None:
            while not stop.is_set():
                try:
                    h = await asyncio.to_thread(cluster.health, avoid=target)
                    st = h["status"] if h.get("discovered_cluster_manager", True) else "no cluster manager"
                except Exception:
                    st = "no answer"
                if st != timeline[-1][1]:
                    timeline.append((round(time.monotonic() - kill_at, 1), st))
                await asyncio.sleep(0.5)

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(cfg.down_s)
        t = time.monotonic()
        await asyncio.to_thread(victim.start)
        restart_s = time.monotonic() - t
        say(f"{target} restarted in {restart_s:.1f}s; waiting for green")
        while True:
            h = await asyncio.to_thread(cluster.health)
            if h["status"] == "green":
                break
            if time.monotonic() - kill_at > cfg.down_s + cfg.green_timeout_s:
                raise TimeoutError(f"cluster not green {cfg.green_timeout_s:.0f}s after the restart: {h}")
            await asyncio.sleep(0.25)
        green_all = time.monotonic() - kill_at
        watcher.cancel()
        green_after = next((t for t, st in timeline[1:] if st == "green"), green_all)
        say(f"green {green_after:.1f}s after the kill, with every node {green_all:.1f}s (statuses: "
            f"{', '.join(f'{st} at {t}s' for t, st in timeline)}); load for {cfg.after_s:.0f}s more")
        await asyncio.sleep(cfg.after_s)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        tasks.clear()

        # --- what was lost --------------------------------------------------------------------------
        # The follower is restarted on the same checkpoint until it applied every event written.
        stop2 = asyncio.Event()
        catch_up = asyncio.create_task(follow(ingestor, mongo.db, stop2, stats=stats, max_backoff=2.0))
        deadline = time.monotonic() + cfg.catch_up_timeout_s
        caught = False
        while time.monotonic() < deadline:
            cp = await mongo.db["cdc_checkpoints"].find_one({"_id": f"outbox:{FEED_NAME}"})
            last = await mongo.db["outbox_events"].find_one({}, sort=[("seq", -1)])
            if last is None or (cp and int(cp["seq"]) >= int(last["seq"])):
                caught = True
                break
            await asyncio.sleep(0.5)
        stop2.set()
        await asyncio.gather(catch_up, return_exceptions=True)
        await search.call(search.os.indices.refresh(index=f"{prefix}-*"))
        missing_audit = await _missing(search, search.index_name(AUDIT_LOGS), acked)
        chunk_sources = await _present_sources(search, alias, list(written))
        dispute_docs = await _present_ids(search, search.index_name(DISPUTES),
                                          [i for i, k in written.items() if k == "dispute"])
        missing_follow = sorted(i for i, k in written.items()
                                if i not in chunk_sources or (k == "dispute" and i not in dispute_docs))
        skips = await ingestor.skip_records(limit=20)
        recall_after = await recall()
        say(f"kNN recall@10 vs exact after: {recall_after:.3f}")

        for q in log:
            q.at = round(q.at - kill_at, 3)
        failed = [q for q in log if not q.ok]
        by_kind: dict[str, int] = {}
        for q in log:
            if not q.ok:
                key = q.kind.split("#")[0]
                by_kind[key] = by_kind.get(key, 0) + 1
        lat: dict[str, dict[str, float]] = {}
        for kind in sorted({q.kind.split("#")[0] for q in log}):
            before = [q.ms for q in log if q.kind.startswith(kind) and q.ok and q.at < 0]
            during = [q.ms for q in log if q.kind.startswith(kind) and q.ok and 0 <= q.at <= green_all]
            lat[kind] = {"p50_before": _pct(before, 50), "p99_before": _pct(before, 99),
                         "p50_during": _pct(during, 50), "p99_during": _pct(during, 99)}
        queries_by_kind: dict[str, int] = {}
        for q in log:
            key = q.kind.split("#")[0]
            queries_by_kind[key] = queries_by_kind.get(key, 0) + 1
        failed_reads = [q for q in failed if not q.kind.startswith("write:")]
        result = DrillResult(
            cluster=health["cluster_name"], nodes=health["number_of_nodes"], killed=target, killed_role=role,
            replicas=replicas, memory_mb=memory, queries=queries_by_kind, failed_queries=len(failed_reads),
            failed_by_kind=by_kind, failures=sorted({q.error or "" for q in failed})[:10],
            failure_window_s=(round(min(q.at for q in failed), 2), round(max(q.at for q in failed), 2))
            if failed else None,
            worst_status_after_kill=max((st for _, st in timeline), key=_severity), status_timeline=timeline,
            restart_s=round(restart_s, 1), green_after_s=round(green_after, 1),
            green_all_nodes_s=round(green_all, 1),
            audit_writes={"acknowledged": len(acked), "failed": audit_failed[0], "missing": len(missing_audit)},
            follower={"written": len(written), "events": stats.events, "errors": stats.errors,
                      "caught_up": caught, "missing": len(missing_follow),
                      "skip_records": [f"{s.source_id}: {s.reason}" for s in skips][:5],
                      "last_error": stats.last_error},
            lost_acknowledged=len(missing_audit) + len(missing_follow),
            lost_ids=(missing_audit + missing_follow)[:20],
            recall_at_10={"before": recall_before, "after": recall_after},
            latency_ms=lat, started_at=started_at)
        return result
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await search.call(search.os.indices.delete(index=f"{prefix}-*", expand_wildcards="all",
                                                       ignore_unavailable=True))
            tpl = await search.call(search.os.indices.get_index_template(name=f"{prefix}-*", ignore=404))
            for t_ in tpl.get("index_templates", []):
                await search.call(search.os.indices.delete_index_template(name=t_["name"]))
        with contextlib.suppress(Exception):
            await mongo.client.drop_database(mongo.db.name)
        await mongo.close()
        await search.close()


def _severity(status: str) -> int:
    return {"green": 0, "yellow": 1, "no cluster manager": 2, "no answer": 2, "red": 3}.get(status, 2)


def _target(cluster: SearchCluster, node: str, alias: str) -> tuple[str, str]:
    """(node name, why it was chosen)."""
    manager = cluster.manager()
    if node == "manager":
        return manager, "the elected cluster manager"
    if node == "primary":
        shards = cluster.request("GET", f"/_cat/shards/{alias}?format=json&h=index,shard,prirep,state,node")
        holder = next(s["node"] for s in shards if s["prirep"] == "p" and s["state"] == "STARTED")
        return holder, "holds the knowledge index's primary shard" + (", cluster manager" if holder == manager else "")
    cluster.node(node)
    return node, "named" + (", cluster manager" if node == manager else "")


async def _missing(search: Any, index: str, ids: list[str]) -> list[str]:
    present = await _present_ids(search, index, ids)
    return [i for i in ids if i not in present]


async def _present_ids(search: Any, index: str, ids: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(ids), 500):
        res = await search.call(search.os.mget(index=index, body={"ids": ids[i:i + 500]}, _source=False))
        found |= {d["_id"] for d in res["docs"] if d.get("found")}
    return found


async def _present_sources(search: Any, index: str, source_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(source_ids), 500):
        body = {"size": 0, "query": {"terms": {"source_id": source_ids[i:i + 500]}},
                "aggs": {"s": {"terms": {"field": "source_id", "size": 1000}}}}
        res = await search.call(search.os.search(index=index, body=body))
        found |= {b["key"] for b in res["aggregations"]["s"]["buckets"]}
    return found


def save(result: DrillResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.model_dump(mode="json"), indent=2) + "\n")
