"""Redis's part of data-subject requests: every key of a user, and every value that names them, erased.

One pass over the whole keyspace (SCAN, every node of a cluster): a key whose name holds the user id (rate-limit
windows, cached profiles and scores, sessions) is deleted; elsewhere the values are read raw and a string that
names the user is deleted with its key, while members of hashes, sets, sorted sets (leaderboards) and lists that
name them are removed one by one. `scan` is the same pass without writes, for `kredete dsr verify`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from redis.exceptions import RedisError

from stores.errors import StoreUnavailable
from stores.fingerprints import Matcher, judge

_BATCH = 500


def _needles(user_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    return {u: (u.lower(), u.lower().replace("-", "")) for u in (str(x) for x in user_ids)}


def _names(text: str, needles: dict[str, tuple[str, str]]) -> set[str]:
    low = text.lower()
    return {u for u, (a, b) in needles.items() if a in low or b in low}


async def _values(redis: Any, keys: list[str]) -> list[tuple[str, str, Any]]:
    """(key, type, raw value) of each key, in two pipelined round trips."""
    pipe = redis.pipeline(transaction=False)
    for k in keys:
        pipe.type(k)
    types = await pipe.execute()
    pipe = redis.pipeline(transaction=False)
    kept: list[tuple[str, str]] = []
    for k, t in zip(keys, types, strict=True):
        t = t.decode() if isinstance(t, bytes) else t
        reader = {"string": pipe.get, "hash": pipe.hgetall, "set": pipe.smembers,
                  "list": lambda x: pipe.lrange(x, 0, -1), "zset": lambda x: pipe.zrange(x, 0, -1)}.get(t)
        if reader is not None:
            reader(k)
            kept.append((k, t))
    values = await pipe.execute() if kept else []
    return [(k, t, v) for (k, t), v in zip(kept, values, strict=True)]


async def _keys(redis: Any) -> list[str]:
    return [k.decode() if isinstance(k, bytes) else k async for k in redis.scan_iter(count=1000)]


def _members(t: str, value: Any) -> list[str]:
    if t == "string":
        return [value or ""]
    if t == "hash":
        return [f"{f}\x00{v}" for f, v in (value or {}).items()]
    return [str(m) for m in (value or [])]


async def erase(redis: Any, user_ids: Sequence[str],
                members: dict[str, list[str]] | None = None) -> dict[str, int]:
    """Delete the users' keys and the values that name them; returns counts. Idempotent. `members`: other exact
    values that stand for a user in sets and sorted sets (their pseudonymous leaderboard handles)."""
    needles = _needles(user_ids)
    exact = {m for ms in (members or {}).values() for m in ms}
    out = {"keys_deleted": 0, "members_removed": 0}
    try:
        keys = await _keys(redis)
        named = [k for k in keys if _names(k, needles)]
        gone = set(named)
        others = [k for k in keys if k not in gone]
        for i in range(0, len(named), _BATCH):
            # one key per DEL: a cluster refuses a multi-key command across hash slots
            pipe = redis.pipeline(transaction=False)
            for k in named[i:i + _BATCH]:
                pipe.delete(k)
            out["keys_deleted"] += sum(int(n) for n in await pipe.execute())
        for i in range(0, len(others), _BATCH):
            for key, t, value in await _values(redis, others[i:i + _BATCH]):
                if t == "string":
                    if value and _names(value, needles):
                        out["keys_deleted"] += int(await redis.delete(key))
                elif t == "hash":
                    fields = [f for f, v in (value or {}).items() if _names(f"{f} {v}", needles)]
                    if fields:
                        out["members_removed"] += int(await redis.hdel(key, *fields))
                else:
                    gone = [m for m in value or [] if _names(str(m), needles) or str(m) in exact]
                    if gone:
                        remove = {"set": redis.srem, "zset": redis.zrem}.get(t)
                        if remove is not None:
                            out["members_removed"] += int(await remove(key, *gone))
                        else:  # list
                            for m in gone:
                                out["members_removed"] += int(await redis.lrem(key, 0, m))
    except RedisError as exc:
        raise StoreUnavailable(f"Redis erasure failed ({type(exc).__name__})", store="redis") from exc
    return out


async def scan(redis: Any, user_id: str, matcher: Matcher | None, *, members: Sequence[str] = ()) -> dict[str, int]:
    """Raw scan of every key and value: keys naming the user, values naming them (or holding one of their
    `members`, e.g. a leaderboard handle), values with their PII."""
    needles = _needles([user_id])
    exact = set(members)
    out = {"keys": 0, "id_refs": 0, "pii": 0, "weak_unattributed": 0}
    try:
        keys = await _keys(redis)
        out["keys"] = len(keys)
        for i in range(0, len(keys), _BATCH):
            for key, t, value in await _values(redis, keys[i:i + _BATCH]):
                texts = [key, *_members(t, value)]
                v = judge(texts, user_id, matcher)
                out["id_refs"] += v.id_ref or bool(_names(key, needles)) or (
                    t in ("set", "zset") and any(str(m) in exact for m in value or []))
                out["pii"] += v.attributable
                out["weak_unattributed"] += bool(v.kinds) and not v.attributable
    except RedisError as exc:
        raise StoreUnavailable(f"Redis scan failed ({type(exc).__name__})", store="redis") from exc
    return out


async def export(redis: Any, user_id: str) -> dict[str, Any]:
    """The user's keys with their values (key names that hold the id)."""
    needles = _needles([user_id])
    try:
        keys = [k for k in await _keys(redis) if _names(k, needles)]
        return {k: v for k, _t, v in await _values(redis, keys)} if keys else {}
    except RedisError as exc:
        raise StoreUnavailable(f"Redis export failed ({type(exc).__name__})", store="redis") from exc
