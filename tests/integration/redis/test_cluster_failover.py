"""A master of a scratch Redis Cluster is killed (SIGKILL) under a steady load of rate-limit checks and cache
reads: its replica takes over, and meanwhile the limiter degrades (never an error) and the cache bypasses to the
source (never a wrong value). The timeline is printed and written to `.local/redis-failover-timeline.json`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
import uuid

import pytest
from pydantic import BaseModel

from config.paths import local_dir
from config.secrets import local_secrets
from guards.principal import Principal, Role
from guards.ratelimit import RateLimiter, RateLimits, identity_key
from kredete.stack.base import port_open
from kredete.stack.redis import RedisClusterServer, _cli
from stores.cache import CacheStore, hash_tag
from stores.cache.aside import EntryKind, ReadThroughCache


class Value(BaseModel):
    n: int


KIND = EntryKind("failover", Value, ttl_s=300)


def _free_cluster_ports(n: int = 6) -> tuple[int, ...]:
    """Ports whose cluster-bus twin (port + 10000) is free too."""
    found: list[int] = []
    for candidate in range(41_000, 55_000, 7):
        if len(found) == n:
            break
        ok = True
        for p in (candidate, candidate + 10_000):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
        if ok:
            found.append(candidate)
    return tuple(found)


@pytest.fixture
def scratch_cluster(session_stack):
    session_stack.need(["redis"])  # provisions redis-server; the scratch cluster is separate
    cluster = RedisClusterServer(_free_cluster_ports(), data_dir=local_dir() / "scratch" / f"rc-{uuid.uuid4().hex[:6]}")
    cluster.start()
    yield cluster
    cluster.reset()


def _master_of(cluster: RedisClusterServer, key: str) -> int:
    port = next(n.port for n in cluster.nodes if port_open(n.port))  # any live node knows the map
    slot = int(_cli(port, "CLUSTER", "KEYSLOT", key).strip())
    for line in _cli(port, "CLUSTER", "NODES").splitlines():
        parts = line.split()
        if "master" not in parts[2] or "fail" in parts[2]:
            continue
        for rng in parts[8:]:
            lo, _, hi = rng.partition("-")
            if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                return int(parts[1].split(":")[1].split("@")[0])
    raise AssertionError(f"no master serves slot {slot}")


async def test_master_failover_keeps_the_limiter_and_the_cache_working(scratch_cluster):
    cluster = scratch_cluster
    secret = local_secrets()
    agent_url = f"redis://agent:{secret['redis_agent']}@127.0.0.1:{cluster.port}/0?cluster=true"
    service_url = f"redis://kredete:{secret['redis_default']}@127.0.0.1:{cluster.port}/0?cluster=true"
    agent = await CacheStore(agent_url, timeout=1.0).connect()
    service = await CacheStore(service_url, timeout=1.0).connect()
    principal = Principal(subject="failover", role=Role.SUPPORT_AGENT, token_id="t", expires_at=2**31,
                          issuer="kredete")
    limiter = RateLimiter(agent, RateLimits(per_tool=100_000, per_principal=100_000, window_ms=60_000,
                                            degraded_per_tool=10_000, degraded_per_principal=10_000),
                          own_issuer="kredete")
    cache = ReadThroughCache(service)
    # One cache key in the same slot as the limiter's keys, so the killed master holds both.
    key = f"cache:{hash_tag(identity_key(principal))}:failover"
    victim = _master_of(cluster, key)
    source_calls = 0

    async def source() -> Value:
        nonlocal source_calls
        source_calls += 1
        return Value(n=42)

    assert await limiter.check(principal, "t") == "counted"
    assert (await cache.get(KIND, key, source)).n == 42
    timeline: list[dict] = []
    t0 = time.monotonic()
    killed_at = failover_at = None
    node = next(n for n in cluster.nodes if n.port == victim)
    try:
        while time.monotonic() - t0 < 40:
            now = time.monotonic() - t0
            if killed_at is None and now > 0.5:
                os.kill(node.pid(), signal.SIGKILL)
                killed_at = now
                timeline.append({"t": round(now, 3), "event": f"SIGKILL master :{victim}"})
            status = await limiter.check(principal, "t")  # never raises a driver error
            calls_before = source_calls
            value = await cache.get(KIND, key, source)
            assert value is not None and value.n == 42
            read = "source" if source_calls > calls_before else "cache"
            if not timeline or timeline[-1].get("limiter") != status or timeline[-1].get("cache") != read:
                timeline.append({"t": round(now, 3), "limiter": status, "cache": read})
            if killed_at is not None and failover_at is None and status == "counted":
                new_master = _master_of(cluster, key)
                failover_at = now
                timeline.append({"t": round(now, 3), "event": f"slot served by :{new_master} (was :{victim})"})
            if failover_at is not None and now - failover_at > 1.0 and status == "counted" and read == "cache":
                break
            cache.clear_local()
            await asyncio.sleep(0.05)
    finally:
        await agent.close()
        await service.close()
        out = local_dir() / "redis-failover-timeline.json"
        out.write_text(json.dumps({"killed_at_s": killed_at, "failover_at_s": failover_at, "timeline": timeline},
                                  indent=1))
        print("\nfailover timeline:", json.dumps(timeline, indent=1))
    assert killed_at is not None and failover_at is not None, timeline
    assert failover_at - killed_at < 20, "the replica took over in time"
    assert any(e.get("limiter") == "degraded" for e in timeline), "the outage window was served degraded"
    assert timeline[-1]["limiter"] == "counted" and timeline[-1]["cache"] == "cache"
    # The killed node comes back as a replica of its old slots' new master; the cluster is whole again.
    node.start()
    deadline = time.monotonic() + 30
    while cluster.cluster_problem() is not None:
        assert time.monotonic() < deadline, cluster.cluster_problem()
        await asyncio.sleep(0.25)
    assert "role:slave" in _cli(victim, "INFO", "replication")
