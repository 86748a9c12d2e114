"""Erasure speed: `kredete dsr erase` per user (p50/p95) and 1,000 users in one batch, on seeded data.

A dataset of its own (PostgreSQL and credit-store database `kredete_bench_dsr_<tag>`, index prefix, key store),
seeded like the stack's (payments, credit store, sealed S3 documents) plus what the other stores hold of each
user: an audit row, AI logs (their conversation, feedback, a support agent's conversation naming them), Redis
keys (rate-limit window, cached profile, leaderboard place, session) and the search indexes (transactions,
users, audit log, credit reports, disputes; the knowledge-chunk index is left out: embedding thousands of
documents here would take minutes and does not change what an erasure costs: one delete-by-query).

Measured, in one run:
  single   N users erased one by one through the service (all eight steps, five stores + key + receipt),
           wall time per user, p50/p95, and per step;
  cli      a few users through `kredete dsr erase` as a process (interpreter start and imports included);
  batch    1,000 users in one erase call (one receipt), total and users/s.
Goal: one user under 2 s end to end. Writes bench/results/dsr.json and prints a table.

    .venv/bin/python bench/dsr.py                 # 1,060 users: 30 single, 30 CLI... see --help
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from config.settings import Settings, resolve  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "dsr.json"
REASON = "DSR-9000: benchmark of the erasure of synthetic customers"


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def build(settings: Settings, users: int, seed: int, console: Console) -> list[str]:
    from guards.redaction import redact
    from kredete.seed.documents import seed_documents
    from kredete.seed.mongo import seed_credit_store_async
    from kredete.seed.payments import SeedConfig, seed_payments
    from kredete.seed.people import person
    from retrieval.index_sync import DocIndexer
    from stores.cache import CacheStore
    from stores.crypto import FieldCipher
    from stores.mongo import MongoStore
    from stores.mongo.ai_logging import AILogger
    from stores.postgres import AuditRepository, PostgresStore
    from stores.postgres.models import AuditEntry
    from stores.search import SearchStore

    cipher = FieldCipher.from_settings(settings)
    people = [person(seed, i) for i in range(users)]
    ids = [str(p.user_id) for p in people]
    t0 = time.perf_counter()
    from stores.postgres.bulk_load import direct_connection

    async with direct_connection(settings.postgres_url.get_secret_value(), command_timeout=3600) as conn:
        await seed_payments(conn, SeedConfig(users=users, seed=seed, transactions_per_user=10), cipher)
    console.print(f"payments seeded ({time.perf_counter() - t0:.0f} s)")
    await seed_credit_store_async(settings, people, seed, console)
    await seed_documents(settings, people, seed, console, cipher=cipher)
    pg = await PostgresStore(settings.postgres_url.get_secret_value()).connect()
    mongo = await MongoStore(settings.mongo_url.get_secret_value(), settings.mongo_db).connect()
    cache = await CacheStore(settings.redis_url.get_secret_value()).connect()
    search = await SearchStore(settings.opensearch_url.get_secret_value(), prefix=settings.index_prefix).connect()
    try:
        audit = AuditRepository(pg)
        logger = AILogger(mongo)
        await logger.start()
        pipe = cache.redis.pipeline(transaction=False)
        for uid in ids:
            await audit.append(AuditEntry(actor_subject=f"user:{uid}", actor_role="customer", actor_user_id=uid,
                                          action="get_wallet_balances", decision="allowed"))
            await logger.log_conversation_turn(f"conv-{uid}", uid, "user", "What is my balance?",
                                               principal_subject=f"user:{uid}")
            await logger.log_feedback(f"conv-{uid}", uid, score=1, label="helpful", comment=None,
                                      principal_subject=f"user:{uid}")
            await logger.log_conversation_turn(f"agent-{uid}", "00000000-0000-0000-0000-000000000000", "tool",
                                               "looked up the account", principal_subject="agent-7",
                                               tool_calls=[{"name": "search_transactions",
                                                            "arguments": {"user_id": uid}}])
            pipe.set(f"rl:customer:{uid}:get_wallet_balances", "3", ex=3600)
            pipe.set(cache.key("profile", uid), json.dumps({"user_id": uid}), ex=3600)
            pipe.zadd(f"lb:{settings.index_prefix}:credit", {uid: 600})
            pipe.hset(f"session:{settings.index_prefix}:{secrets.token_hex(8)}", mapping={"user_id": uid})
        await pipe.execute()
        await logger.stop()
        for name in ("transactions", "users", "audit-logs"):
            await DocIndexer(search, name, redact=redact, lag=0).sync(postgres=pg)
        for name in ("credit-reports", "disputes"):
            await DocIndexer(search, name, redact=redact).sync(mongo_db=mongo.db)
    finally:
        for s in (search, cache, mongo, pg):
            await s.close()
    console.print(f"dataset built ({time.perf_counter() - t0:.0f} s)")
    return ids


async def erase_single(settings: Settings, ids: list[str]) -> tuple[list[float], dict[str, list[float]]]:
    from services.privacy import PrivacyService

    svc = await PrivacyService.open(settings, actor="bench")
    walls: list[float] = []
    steps: dict[str, list[float]] = {}
    try:
        for uid in ids:
            t0 = time.perf_counter()
            await svc.erase([uid], REASON,
                            on_step=lambda name, _d, secs: steps.setdefault(name, []).append(secs))
            walls.append(time.perf_counter() - t0)
    finally:
        await svc.close()
    return walls, steps


def erase_cli(env: dict[str, str], ids: list[str]) -> list[float]:
    kredete = str(Path(sys.executable).parent / "kredete")
    out = []
    for uid in ids:
        t0 = time.perf_counter()
        subprocess.run([kredete, "dsr", "erase", "--user", uid, "--reason", REASON], env=env, check=True,
                       capture_output=True)
        out.append(time.perf_counter() - t0)
    return out


async def erase_batch(settings: Settings, ids: list[str]) -> tuple[float, dict[str, float]]:
    from services.privacy import PrivacyService

    svc = await PrivacyService.open(settings, actor="bench")
    steps: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        await svc.erase(ids, REASON, on_step=lambda name, _d, secs: steps.__setitem__(name, secs))
        return time.perf_counter() - t0, steps
    finally:
        await svc.close()


async def verify_one(settings: Settings, uid: str) -> tuple[float, bool, list[dict]]:
    from services.privacy import PrivacyService

    svc = await PrivacyService.open(settings, actor="bench")
    try:
        t0 = time.perf_counter()
        report = await svc.verify(uid)
        # counts and places only (a verdict holds no value of the user): what a failure must be read from
        failing = [{"store": v.store, "hits": v.hits, "error": v.error, "details": v.details}
                   for v in report.stores if v.hits or v.error]
        return time.perf_counter() - t0, report.passed, failing
    finally:
        await svc.close()


def _remove(keystore: Path) -> None:
    """The bench's key store and its WAL files."""
    for path in (keystore, Path(f"{keystore}-wal"), Path(f"{keystore}-shm")):
        path.unlink(missing_ok=True)


async def _admin(sql: str) -> None:
    """One statement on the maintenance database (CREATE/DROP DATABASE run outside a transaction)."""
    from stores.postgres import PostgresStore

    base = resolve().postgres_url.get_secret_value()
    store = await PostgresStore(base.rsplit("/", 1)[0] + "/postgres").connect()
    try:
        async with store.connection() as conn:
            await conn.execute(sql)
    finally:
        await store.close()


async def drop(settings: Settings) -> None:
    from stores.mongo import MongoStore
    from stores.search import SearchStore

    await _admin(f'DROP DATABASE IF EXISTS "{settings.postgres_db}" WITH (FORCE)')
    mongo = await MongoStore(settings.mongo_url.get_secret_value(), settings.mongo_db).connect()
    await mongo.client.drop_database(settings.mongo_db)
    await mongo.close()
    search = await SearchStore(settings.opensearch_url.get_secret_value(), prefix=settings.index_prefix).connect()
    await search.os.indices.delete(index=f"{settings.index_prefix}-*", expand_wildcards="all",
                                   ignore_unavailable=True)
    await search.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--single", type=int, default=30, help="users erased one by one through the service")
    ap.add_argument("--cli", type=int, default=5, help="users erased one by one through the CLI process")
    ap.add_argument("--batch", type=int, default=1000, help="users erased in one batch")
    ap.add_argument("--keep", action="store_true", help="keep the bench dataset")
    args = ap.parse_args()
    console = Console()

    from kredete.stack.logins import grant_local_logins
    from stores.objects.setup import setup_all
    from stores.postgres import migrate

    tag = secrets.token_hex(3)
    name = f"kredete_bench_dsr_{tag}"
    from config.paths import local_dir

    keystore = local_dir() / "keystore" / f"{name}.sqlite3"
    settings = resolve(Settings(postgres_db=name, mongo_db=name, index_prefix=f"kredete-bench-dsr-{tag}",
                                keystore_path=str(keystore)))
    await _admin(f'CREATE DATABASE "{name}"')
    migrate.upgrade(settings.postgres_url.get_secret_value())
    grant_local_logins(settings.postgres_url.get_secret_value())
    await setup_all(resolve())
    users = args.single + args.cli + args.batch
    env = {**os.environ, "KREDETE_POSTGRES_DB": name, "KREDETE_MONGO_DB": name,
           "KREDETE_INDEX_PREFIX": settings.index_prefix, "KREDETE_KEYSTORE_PATH": str(keystore)}
    try:
        ids = await build(settings, users, secrets.randbelow(10**9), console)
        single_ids, cli_ids, batch_ids = ids[:args.single], ids[args.single:args.single + args.cli], \
            ids[args.single + args.cli:]
        with console.status(f"erasing {len(single_ids)} users one by one"):
            walls, steps = await erase_single(settings, single_ids)
        with console.status(f"erasing {len(cli_ids)} users through the CLI"):
            cli = erase_cli(env, cli_ids)
        with console.status(f"erasing {len(batch_ids)} users in one batch"):
            batch_s, batch_steps = await erase_batch(settings, batch_ids)
        verify_s, passed, failing = await verify_one(settings, single_ids[0])
    finally:
        if not args.keep:
            await drop(settings)
            _remove(keystore)

    result = {
        "users_seeded": users,
        "single": {"users": len(walls), "p50_s": round(statistics.median(walls), 3),
                   "p95_s": round(_pct(walls, 0.95), 3), "max_s": round(max(walls), 3),
                   "steps_p50_ms": {k: round(statistics.median(v) * 1000, 1) for k, v in steps.items()}},
        "cli": {"users": len(cli), "p50_s": round(statistics.median(cli), 2) if cli else None},
        "batch": {"users": len(batch_ids), "seconds": round(batch_s, 2),
                  "users_per_s": round(len(batch_ids) / batch_s, 1),
                  "steps_s": {k: round(v, 2) for k, v in batch_steps.items()}},
        "verify_one_user_s": round(verify_s, 2), "verify_passed": passed,
        "verify_failing_stores": failing,
        "goal_one_user_under_2s": statistics.median(walls) < 2.0,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_1m": round(os.getloadavg()[0], 1)},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    table = Table(title=f"dsr erase on {users:,} seeded users (five stores + key + receipt)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("one user, through the service: p50 / p95", f"{result['single']['p50_s']:.2f} / "
                                                                 f"{result['single']['p95_s']:.2f} s")
    for k, v in result["single"]["steps_p50_ms"].items():
        table.add_row(f"  step {k} (p50)", f"{v:.0f} ms")
    table.add_row("one user, `kredete dsr erase` process (p50)", f"{result['cli']['p50_s']} s")
    table.add_row(f"{len(batch_ids):,} users in one batch", f"{batch_s:.1f} s ({result['batch']['users_per_s']} "
                                                             "users/s)")
    table.add_row("verify one erased user (raw scans of every store)",
                  f"{verify_s:.1f} s ({'pass' if passed else 'FAIL'})")
    console.print(table)
    console.print(f"results: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
