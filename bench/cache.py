"""Cache benchmark, one run on the same data: cache hit vs the source read it replaces, Zipf hit ratio,
invalidation lag, rate-limiter throughput on the cluster vs a standalone Redis.

    python -m bench.cache [--users 10000] [--requests 60000] [--writes 200] [--seconds 5]

Data: a throw-away PostgreSQL database and credit-store database (`kredete_bench_cache`) with `--users` users
(profile rows), one score point each in the credit store, and the FX pairs of the test factories.

* **hit vs source (p50)**: the source read is the repository call the cache replaces (profile on the primary,
  latest score point in the credit store, latest FX rate), timed on the same keys; "Redis hit" is a cache-aside
  read answered by Redis (local tier off), "local hit" one answered by the process's own tier.
* **Zipf(1.1) hit ratio**: reads of scores and profiles, users drawn Zipf(1.1) over `--users`, at the spec's
  TTLs (5 min / 1 h), local tier off, so every read reaches Redis; the ratio is what Redis answered without the
  source. `--requests` reads from an empty cache (cold), then `--requests` more (the measured, warm ratio). The
  run lasts well under the TTLs, so a simulated hour at the measured request rate (same TTLs and jitter,
  virtual clock) is reported beside it.
* **invalidation lag**: `--writes` profile updates and score points through the services, one at a time; lag =
  from the service call returning (committed) to a subscriber (its own connection) receiving the eviction.
* **rate limiter**: `--seconds` of `RateLimiter.check` from 16 concurrent callers (distinct identities), against
  the stack's cluster and against a scratch standalone Redis started for the run (same ACL users).

Results: bench/results/cache.json and a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import statistics
import time
import uuid
from bisect import bisect_left
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results" / "cache.json"
DB = "kredete_bench_cache"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Zipf:
    """Ranks 1..n with P(k) ∝ 1/k^s (deterministic with a seeded Random)."""

    def __init__(self, n: int, s: float, rng: random.Random) -> None:
        self.cdf = list(accumulate(1 / k**s for k in range(1, n + 1)))
        self.rng = rng

    def draw(self) -> int:
        return bisect_left(self.cdf, self.rng.random() * self.cdf[-1])


# --- data -------------------------------------------------------------------------------------------------
async def setup(users: int) -> dict[str, Any]:
    import psycopg

    from config.settings import resolve
    from services.caching import read_through
    from stores.cache import CacheStore
    from stores.mongo import MongoStore
    from stores.mongo.collections import ensure_schema
    from stores.postgres import PostgresStore, migrate

    s = resolve()
    base = s.postgres_url.get_secret_value().rsplit("/", 1)[0]
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    migrate.upgrade(f"{base}/{DB}")
    pg = await PostgresStore(f"{base}/{DB}", None, max_size=20).connect()
    ids = [uuid.UUID(int=random.Random(i).getrandbits(128) | (4 << 76)) for i in range(users)]
    async with pg.connection() as conn:
        await conn.copy_records_to_table("users", records=[(u, "active", "NG", "NGN", "full") for u in ids],
                                         columns=["id", "status", "country", "home_currency", "kyc_level"])
        from tests.integration.postgres.factories import RATES

        for (b, q), rate in RATES.items():
            await conn.execute("INSERT INTO fx_rates (base_currency, quote_currency, rate, source, observed_at) "
                               "VALUES ($1, $2, $3, 'bench', now() - interval '1 minute')", b, q, rate)
    mongo = await MongoStore(s.mongo_url.get_secret_value(), DB).connect()
    await mongo.client.drop_database(DB)
    await ensure_schema(mongo.db)
    at = datetime.now(UTC) - timedelta(days=1)
    docs = [{"_id": str(uuid.uuid4()), "user_id": str(u), "bureau": "crc_ng", "score_model": "bureau",
             "score": 500 + i % 300, "as_of": at, "source": "bureau", "report_id": None, "created_at": at}
            for i, u in enumerate(ids)]
    for i in range(0, len(docs), 1000):
        await mongo.db["score_history"].insert_many(docs[i:i + 1000])
    cache = await CacheStore(s.redis_url.get_secret_value()).connect()
    return {"settings": s, "pg": pg, "mongo": mongo, "cache": cache, "ids": ids, "read_through": read_through,
            "pairs": list(RATES)}


async def drop(env: dict[str, Any]) -> None:
    import psycopg

    await env["pg"].close()
    await env["mongo"].client.drop_database(DB)
    await env["mongo"].close()
    await env["cache"].close()
    base = env["settings"].postgres_url.get_secret_value().rsplit("/", 1)[0]
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


# --- 1. hit vs source -----------------------------------------------------------------------------------
async def hit_vs_source(env: dict[str, Any], n: int = 400) -> dict[str, dict[str, float]]:
    from services.caching import FX_RATE, PROFILE, SCORE, fx_key, profile_key, score_key
    from services.credit import CreditService
    from services.fx import FXService
    from services.users import UserService
    from stores.cache.aside import ReadThroughCache
    from stores.scope import RowScope

    pg, mongo, cache = env["pg"], env["mongo"], env["cache"]
    ids = env["ids"][:n]
    users, credit, fx = UserService(pg), CreditService(mongo), FXService(pg)
    sources = {
        "credit score": (SCORE, score_key, lambda u: credit.scores.series(RowScope.users(u), u, limit=1)),
        "profile": (PROFILE, profile_key, lambda u: users.users.get_profile(RowScope.users(u), u)),
        "FX rate": (FX_RATE, None, None),
    }
    out: dict[str, dict[str, float]] = {}
    for name, (kind, key_of, read) in sources.items():
        if name == "FX rate":
            pairs = [env["pairs"][i % len(env["pairs"])] for i in range(n)]
            keys = [fx_key(b, q) for b, q in pairs]
            loads = [(lambda b=b, q=q: fx.fx.latest_rate(b, q)) for b, q in pairs]
        else:
            keys = [key_of(u) for u in ids]
            loads = [(lambda u=u, read=read: read(u)) for u in ids]
        src_t = []
        for load in loads:
            t = time.perf_counter()
            await load()
            src_t.append(time.perf_counter() - t)

        async def one(load, kind=kind, name=name):
            value = await load()
            if name == "credit score":  # the service caches a CreditScore built from the point
                from services.caching import CreditScore
                p = value[-1]
                return CreditScore(user_id=p.user_id, score=p.score, bureau=str(p.bureau),
                                   score_model=p.score_model, as_of=p.as_of, source=p.source)
            return value

        redis_front = ReadThroughCache(cache, local_ttl_s=0)
        for key, load in zip(keys, loads, strict=True):
            await cache.delete(key)
            await redis_front.get(kind, key, lambda load=load: one(load))
        hit_t = []
        for key, load in zip(keys, loads, strict=True):
            t = time.perf_counter()
            await redis_front.get(kind, key, lambda load=load: one(load))
            hit_t.append(time.perf_counter() - t)
        local_front = env["read_through"](cache, env["settings"])
        await local_front.follow_invalidations()
        for key, load in zip(keys, loads, strict=True):
            await local_front.get(kind, key, lambda load=load: one(load))
        local_t = []
        for key, load in zip(keys, loads, strict=True):
            t = time.perf_counter()
            await local_front.get(kind, key, lambda load=load: one(load))
            local_t.append(time.perf_counter() - t)
        await local_front.close()
        s50, h50, l50 = (statistics.median(x) * 1000 for x in (src_t, hit_t, local_t))
        out[name] = {"source_p50_ms": round(s50, 3), "redis_hit_p50_ms": round(h50, 3),
                     "local_hit_p50_ms": round(l50, 4), "redis_speedup": round(s50 / h50, 1),
                     "local_speedup": round(s50 / l50, 1)}
    return out


# --- 2. Zipf hit ratio --------------------------------------------------------------------------------------
async def zipf_hit_ratio(env: dict[str, Any], requests: int, concurrency: int = 16) -> dict[str, Any]:
    from services.caching import profile_key, score_key
    from services.credit import CreditService
    from services.users import UserService
    from stores.cache.aside import ReadThroughCache
    from stores.scope import RowScope

    pg, mongo, cache, ids = env["pg"], env["mongo"], env["cache"], env["ids"]
    for u in ids:  # start cold
        await cache.delete(score_key(u), profile_key(u))
    front = ReadThroughCache(cache, local_ttl_s=0, jitter=env["settings"].cache_ttl_jitter)
    users, credit = UserService(pg, cache=front), CreditService(mongo, cache=front)
    rng = random.Random(11)
    zipf = Zipf(len(ids), 1.1, rng)
    warmup = [(rng.random() < 0.5, ids[zipf.draw()]) for _ in range(requests)]
    plan = [(rng.random() < 0.5, ids[zipf.draw()]) for _ in range(requests)]
    loads = {"score": 0, "profile": 0}
    orig_series, orig_profile = credit.scores.series, users.users.get_profile

    async def counted_series(*a, **k):
        loads["score"] += 1
        return await orig_series(*a, **k)

    async def counted_profile(*a, **k):
        loads["profile"] += 1
        return await orig_profile(*a, **k)

    credit.scores.series, users.users.get_profile = counted_series, counted_profile

    async def run(reads: list[tuple[bool, uuid.UUID]]) -> tuple[dict[str, float], float]:
        queue = list(reversed(reads))
        loads["score"] = loads["profile"] = 0

        async def worker():
            while queue:
                is_score, u = queue.pop()
                scope = RowScope.users(u)
                if is_score:
                    await credit.credit_score(scope, u)
                else:
                    await users.profile(scope, u)

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t
        n_score = sum(1 for s, _ in reads if s)
        return {"score": round(1 - loads["score"] / n_score, 4),
                "profile": round(1 - loads["profile"] / (len(reads) - n_score), 4)}, elapsed

    cold, _ = await run(warmup)  # from an empty cache
    warm, elapsed = await run(plan)  # the next `requests` reads, the cache as the first pass left it
    rate = requests / elapsed
    return {"requests": requests, "seconds": round(elapsed, 1), "requests_per_s": round(rate),
            "cold_hit_ratio_score": cold["score"], "cold_hit_ratio_profile": cold["profile"],
            "hit_ratio_score": warm["score"], "hit_ratio_profile": warm["profile"],
            "simulated_hour": simulate(len(ids), rate, env["settings"].cache_ttl_jitter)}


def simulate(users: int, rate: float, jitter: float, seconds: float = 3600) -> dict[str, float]:
    """The same policy on a virtual clock: one hour of Zipf(1.1) reads at `rate`/s, each kind half of them."""
    from stores.cache import TTL_PROFILES_S, TTL_SCORES_S

    rng = random.Random(5)
    zipf = Zipf(users, 1.1, rng)
    out = {}
    for name, ttl in (("score", TTL_SCORES_S), ("profile", TTL_PROFILES_S)):
        expires: dict[int, float] = {}
        hits = n = 0
        step = 2 / rate
        t = 0.0
        while t < seconds:
            u = zipf.draw()
            n += 1
            if expires.get(u, -1) > t:
                hits += 1
            else:
                expires[u] = t + ttl * (1 + rng.uniform(-jitter, jitter))
            t += step
        out[f"hit_ratio_{name}"] = round(hits / n, 4)
    return out


# --- 3. invalidation lag ------------------------------------------------------------------------------------
async def invalidation_lag(env: dict[str, Any], writes: int) -> dict[str, Any]:
    from services.caching import profile_key, score_key
    from services.credit import CreditService
    from services.invalidation import InvalidationPublisher
    from services.users import UserService
    from stores.cache.pubsub import InvalidationSubscriber
    from stores.mongo.documents import ScorePoint

    pg, mongo, cache = env["pg"], env["mongo"], env["cache"]
    front = env["read_through"](cache, env["settings"])
    publisher = await InvalidationPublisher(front, postgres=pg, mongo_db=mongo.db, name=f"bench-{secrets.token_hex(3)}",
                                            poll_s=1.0).start()
    received: dict[str, float] = {}
    sub = await InvalidationSubscriber(cache, on_keys=lambda keys: [received.setdefault(k, time.perf_counter())
                                                                    for k in keys],
                                       on_reset=lambda: None).start()
    users, credit = UserService(pg), CreditService(mongo, cache=front)
    await asyncio.sleep(1.5)  # both consumers registered
    rng = random.Random(3)
    lags: dict[str, list[float]] = {"profile (Postgres outbox)": [], "score (credit-store outbox)": []}
    levels = ["none", "basic", "full"]
    for i in range(writes):
        u = env["ids"][rng.randrange(len(env["ids"]))]
        if i % 2 == 0:
            key, label = profile_key(u), "profile (Postgres outbox)"
            received.pop(key, None)
            await users.update_profile(u, {"kyc_level": levels[i % 3]})
        else:
            key, label = score_key(u), "score (credit-store outbox)"
            received.pop(key, None)
            await credit.record_score(ScorePoint(user_id=str(u), bureau="crc_ng", score=400 + i % 500,
                                                 as_of=datetime.now(UTC) - timedelta(minutes=i)))
        done = time.perf_counter()
        while key not in received and time.perf_counter() - done < 5:  # noqa: ASYNC110 - polls a dict
            await asyncio.sleep(0.0005)
        lags[label].append((received.get(key, float("inf")) - done) * 1000)
        await asyncio.sleep(0.02)
    await sub.stop()
    await publisher.stop()
    everything = [x for v in lags.values() for x in v]
    return {"writes": writes, **{k: {"p50_ms": round(pct(v, 50), 1), "p99_ms": round(pct(v, 99), 1)}
                                 for k, v in lags.items()},
            "all": {"p50_ms": round(pct(everything, 50), 1), "p99_ms": round(pct(everything, 99), 1),
                    "max_ms": round(max(everything), 1)}}


# --- 4. rate limiter ------------------------------------------------------------------------------------------
async def _hammer(limiter, principal, stop_at: float) -> int:
    n = 0
    while time.perf_counter() < stop_at:
        if await limiter.check(principal, "get_transaction") != "counted":
            raise RuntimeError("the limiter did not count in Redis")
        n += 1
    return n


async def limiter_throughput(env: dict[str, Any], seconds: float, concurrency: int = 16) -> dict[str, Any]:
    from config.paths import local_dir
    from config.ports import free_port
    from config.secrets import local_secrets
    from guards.principal import Principal, Role
    from guards.ratelimit import RateLimiter, RateLimits
    from kredete.stack.redis import RedisServer
    from stores.cache import CacheStore

    standalone = RedisServer(port=free_port(), data_dir=local_dir() / "scratch" / f"redis-bench-{secrets.token_hex(3)}")
    standalone.start()
    limits = RateLimits(per_tool=10**9, per_principal=10**9, window_ms=60_000)
    urls = {"cluster": env["settings"].redis_agent_url.get_secret_value(),
            "standalone": f"redis://agent:{local_secrets()['redis_agent']}@127.0.0.1:{standalone.port}/0"}
    out: dict[str, Any] = {}
    try:
        for name, url in urls.items():
            store = await CacheStore(url).connect()
            limiter = RateLimiter(store, limits)
            principals = [Principal(subject=f"bench-{i}", role=Role.SUPPORT_AGENT, token_id=f"bench-{i}",
                                    expires_at=2**31, issuer="kredete") for i in range(concurrency)]
            for p in principals:  # scripts loaded on every node they run on
                await limiter.check(p, "warmup")
            t = time.perf_counter()
            counts = await asyncio.gather(*(_hammer(limiter, p, t + seconds) for p in principals))
            out[name] = round(sum(counts) / (time.perf_counter() - t))
            await store.close()
    finally:
        standalone.reset()
    out["cluster_vs_standalone"] = round(out["cluster"] / out["standalone"], 2)
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    console = Console(stderr=True)
    console.log(f"setting up {args.users} users")
    env = await setup(args.users)
    result: dict[str, Any] = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "users": args.users,
                              "redis": "cluster" if env["cache"].cluster else "standalone"}
    phases = (("hit_vs_source", lambda: hit_vs_source(env)), ("zipf", lambda: zipf_hit_ratio(env, args.requests)),
              ("invalidation_lag", lambda: invalidation_lag(env, args.writes)),
              ("rate_limiter_calls_per_s", lambda: limiter_throughput(env, args.seconds)))
    if args.only:  # rerun some phases, keep the others' results from the last full run
        previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        result = {**previous, **{k: v for k, v in result.items() if k != "at"}}
        result[f"rerun_{'_'.join(args.only)}_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        phases = tuple(p for p in phases if p[0] in args.only)
    try:
        for name, phase in phases:
            console.log(name)
            result[name] = await phase()
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.with_suffix(".partial.json").write_text(json.dumps(result, indent=2))  # survives a crash
    finally:
        await drop(env)
    RESULTS.with_suffix(".partial.json").unlink(missing_ok=True)
    return result


def _yes(ok: bool) -> str:
    return "yes" if ok else "no"


def report(r: dict[str, Any]) -> None:
    t = Table(title=f"cache benchmark ({r['redis']}, {r['users']} users)")
    for col in ("measure", "value", "goal", "met"):
        t.add_column(col)
    for name, h in r["hit_vs_source"].items():
        t.add_row(f"{name}: source / Redis hit / local hit p50",
                  f"{h['source_p50_ms']} / {h['redis_hit_p50_ms']} / {h['local_hit_p50_ms']} ms "
                  f"({h['redis_speedup']}× / {h['local_speedup']}×)", "≥ 10×",
                  f"Redis {_yes(h['redis_speedup'] >= 10)}, local {_yes(h['local_speedup'] >= 10)}")
    z = r["zipf"]
    t.add_row(f"Zipf(1.1) hit ratio from empty, first {z['requests']} reads (score / profile)",
              f"{z['cold_hit_ratio_score']} / {z['cold_hit_ratio_profile']}", "", "")
    t.add_row(f"Zipf(1.1) hit ratio, next {z['requests']} reads in {z['seconds']} s (score / profile)",
              f"{z['hit_ratio_score']} / {z['hit_ratio_profile']}", "≥ 0.9",
              "yes" if min(z["hit_ratio_score"], z["hit_ratio_profile"]) >= 0.9 else "no")
    sim = z["simulated_hour"]
    t.add_row(f"  same, simulated hour at {z['requests_per_s']} reads/s", f"{sim['hit_ratio_score']} / "
              f"{sim['hit_ratio_profile']}", "≥ 0.9", "yes" if min(sim.values()) >= 0.9 else "no")
    lag = r["invalidation_lag"]
    for k, v in lag.items():
        if isinstance(v, dict):
            t.add_row(f"invalidation lag {k} p50 / p99", f"{v['p50_ms']} / {v['p99_ms']} ms", "p99 ≤ 50 ms",
                      "yes" if v["p99_ms"] <= 50 else "no")
    rl = r["rate_limiter_calls_per_s"]
    t.add_row("rate limiter calls/s cluster / standalone", f"{rl['cluster']} / {rl['standalone']} "
              f"({rl['cluster_vs_standalone']}×)", "≥ 0.8×", "yes" if rl["cluster_vs_standalone"] >= 0.8 else "no")
    Console(width=170).print(t)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--only", nargs="+", choices=["hit_vs_source", "zipf", "invalidation_lag",
                                                      "rate_limiter_calls_per_s"], help="rerun these phases")
    result = asyncio.run(main(parser.parse_args()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    report(result)
