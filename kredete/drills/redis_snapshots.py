"""Redis RDB snapshots shipped to the backups bucket, and their restore.

AOF stays the primary persistence (appendfsync everysec); these snapshots are the off-host copy. A snapshot
is streamed from the running server with `redis-cli --rdb` as the ACL user `backup` (it may only SYNC: no
key access), its password passed in REDISCLI_AUTH (never on the command line), and stored as
`s3://<prefix>-backups/redis/<UTC time>.rdb` with SSE-KMS (object lock applies as to every backup).
Schedule it like the database backups, e.g. `*/15 * * * * kredete backup redis`.

On the Redis Cluster (the default topology) a snapshot is one RDB per master, streamed from each, stored as
`redis/<UTC time>.cluster/slots-<first>-<last>.rdb` by the slot range it holds; standalone Redis gives
`redis/<UTC time>.rdb`.

A restore downloads a snapshot into an empty dir and proves it by loading each file in a scratch redis-server
on a free port (key count); `replace=True` stops the local Redis, moves its AOF and RDB aside, starts it on the
snapshot (Redis 7 rebuilds the AOF from the loaded data), and reports the key count. On the cluster each
master gets the file of the slot range it serves now (a cluster whose slot layout changed since the snapshot
is refused); the replicas are emptied and copy their master again.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from config import ports
from config.errors import StackError
from config.paths import local_dir
from config.ports import free_port
from config.secrets import local_secrets
from config.settings import resolve

PREFIX = "redis/"


def _bucket() -> str:
    return f"{resolve().s3_bucket_prefix}-backups"


def _objects():
    """The backups bucket as the `backup_writer` S3 principal (write and read; no version deletes)."""
    from stores.objects.principals import objects_for

    return objects_for(resolve(), "backup_writer")


CLUSTER_SUFFIX = ".cluster"


def _cluster() -> bool:
    return resolve().redis_topology == "cluster"


def cluster_masters() -> dict[str, int]:
    """The cluster's serving masters now: slot ranges (`0-5460`, several joined by `_`) -> port."""
    from kredete.stack.redis import _cli

    out: dict[str, int] = {}
    for line in _cli(ports.REDIS_CLUSTER[0], "CLUSTER", "NODES").splitlines():
        parts = line.split()
        if len(parts) > 8 and "master" in parts[2] and "fail" not in parts[2]:
            port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
            out["_".join(parts[8:])] = port
    return out


def take_snapshot(path: Path, port: int | None = None) -> int:
    """Stream an RDB from a running Redis (the standalone server by default) into `path`; returns its size."""
    env = {**os.environ, "REDISCLI_AUTH": local_secrets()["redis_backup"]}
    proc = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port or ports.REDIS), "--user", "backup",
                           "--no-auth-warning", "--rdb", str(path)], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    if proc.returncode != 0 or not path.exists():
        raise StackError(f"redis-cli --rdb failed ({proc.returncode}): {(proc.stdout + proc.stderr).strip()[-300:]}")
    return path.stat().st_size


def _put(files: dict[str, bytes]) -> None:
    from stores.objects.buckets import LOCAL_KMS_KEY_ID

    extra = {"ServerSideEncryption": "aws:kms"}
    if urlsplit(resolve().s3_url or "").hostname in ("127.0.0.1", "localhost"):
        extra["SSEKMSKeyId"] = LOCAL_KMS_KEY_ID

    async def put() -> None:
        objects = _objects()
        try:
            async with objects.client() as s3:
                for key, data in files.items():
                    await s3.put_object(Bucket=_bucket(), Key=key, Body=data, **extra)
        finally:
            await objects.close()

    asyncio.run(put())


def backup() -> dict[str, Any]:
    """Take a snapshot (one per master on the cluster) and put it in the backups bucket (SSE-KMS); audited by
    the caller."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    t0 = time.monotonic()
    files: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="kredete-rdb-") as tmp:
        if _cluster():
            masters = cluster_masters()
            if not masters:
                raise StackError("the Redis cluster has no serving master: nothing to snapshot")
            paths = {port: Path(tmp) / f"slots-{slots}.rdb" for slots, port in sorted(masters.items())}
            # Side by side: each master waits repl-diskless-sync-delay (5 s by default) before it streams the
            # RDB, for more replicas to share it; one after another the three waits added up to 15 s.
            with ThreadPoolExecutor(len(paths)) as pool:
                list(pool.map(take_snapshot, paths.values(), paths.keys()))
            for path in paths.values():
                files[f"{PREFIX}{stamp}{CLUSTER_SUFFIX}/{path.name}"] = path.read_bytes()
        else:
            path = Path(tmp) / "dump.rdb"
            take_snapshot(path)
            files[f"{PREFIX}{stamp}.rdb"] = path.read_bytes()
    _put(files)
    name = f"{stamp}{CLUSTER_SUFFIX}" if _cluster() else f"{stamp}.rdb"
    return {"snapshot": name, "bucket": _bucket(), "files": len(files),
            "bytes": sum(len(d) for d in files.values()), "seconds": round(time.monotonic() - t0, 2)}


def _keys() -> list[str]:
    async def keys() -> list[str]:
        out: list[str] = []
        objects = _objects()
        try:
            async with objects.client() as s3:
                async for page in s3.get_paginator("list_objects_v2").paginate(Bucket=_bucket(), Prefix=PREFIX):
                    out += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".rdb")]
        finally:
            await objects.close()
        return sorted(out)

    return asyncio.run(keys())


def _by_snapshot() -> dict[str, list[str]]:
    """Snapshot name (`<stamp>.rdb` or `<stamp>.cluster`) -> its object keys, oldest snapshot first."""
    out: dict[str, list[str]] = {}
    for key in _keys():
        name = key.removeprefix(PREFIX).split("/", 1)[0]
        out.setdefault(name, []).append(key)
    return dict(sorted(out.items()))


def snapshots() -> list[str]:
    return list(_by_snapshot())


def _download(key: str, dest: Path) -> None:
    async def get() -> bytes:
        objects = _objects()
        try:
            async with objects.client() as s3:
                obj = await s3.get_object(Bucket=_bucket(), Key=key)
                return await obj["Body"].read()
        finally:
            await objects.close()

    dest.write_bytes(asyncio.run(get()))


def count_keys(rdb: Path) -> tuple[int, int]:
    """Load the RDB file `rdb` in a scratch redis-server (free port, no persistence) and count its keys: all of
    them, and those with a TTL (they may expire before a restore is checked: rate-limit windows, cached
    responses, sessions)."""
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(rdb.parent),
                             "--dbfilename", rdb.name, "--appendonly", "no", "--save", ""],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # INFO answers while the file still loads (DBSIZE does not): count once `loading:0`.
            out = subprocess.run(["redis-cli", "-p", str(port), "INFO"], capture_output=True, text=True,
                                 check=False, timeout=5)
            if out.returncode == 0 and "loading:0" in out.stdout.splitlines():
                return _keyspace(out.stdout)
            if proc.poll() is not None:
                raise StackError("redis-server refused the snapshot (not a valid RDB file?)")
            time.sleep(0.2)
        raise StackError("the scratch redis-server did not load the snapshot in 60 s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _keyspace(info: str) -> tuple[int, int]:
    """(keys, keys with a TTL) over every database of an `INFO keyspace` answer (`db0:keys=3,expires=1,...`)."""
    keys = volatile = 0
    for line in info.splitlines():
        if line.startswith("db") and ":" in line:
            fields = dict(part.split("=", 1) for part in line.split(":", 1)[1].split(","))
            keys += int(fields.get("keys", 0))
            volatile += int(fields.get("expires", 0))
    return keys, volatile


def restore(snapshot: str = "latest", *, target_dir: Path | None = None, replace: bool = False) -> dict[str, Any]:
    """Restore a snapshot into an empty dir (verified by loading it), or over the local Redis (`replace`)."""
    available = _by_snapshot()
    if not available:
        raise StackError(f"no Redis snapshot in s3://{_bucket()}/{PREFIX} (run `kredete backup redis`)")
    name = list(available)[-1] if snapshot == "latest" else snapshot.removeprefix(PREFIX).rstrip("/")
    if name not in available:
        raise StackError(f"unknown Redis snapshot {snapshot!r}; the bucket holds: {', '.join(list(available)[-10:])}")
    is_cluster = name.endswith(CLUSTER_SUFFIX)
    if replace and is_cluster != _cluster():
        raise StackError(f"snapshot {name} is of a {'cluster' if is_cluster else 'standalone'} Redis; the local "
                         f"Redis is {resolve().redis_topology}: restore it into a dir instead")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    dest = (target_dir or local_dir() / "restores" / f"redis-{stamp}").resolve()
    if dest.exists() and any(dest.iterdir()):
        raise StackError(f"target dir {dest} is not empty: nothing was restored")
    dest.mkdir(parents=True, exist_ok=True)
    files = []
    for key in available[name]:
        path = dest / ("dump.rdb" if not is_cluster else key.rsplit("/", 1)[1])
        _download(key, path)
        files.append(path)
    counts = [count_keys(f) for f in files]
    keys, volatile = sum(k for k, _ in counts), sum(v for _, v in counts)
    result: dict[str, Any] = {"snapshot": name, "target_dir": str(dest), "files": len(files), "keys": keys,
                              "keys_with_ttl": volatile, "replaced": False}
    if replace:
        result.update(_replace_cluster(files, stamp) if is_cluster else _replace_live(files[0], stamp))
        # Keys with a TTL may have expired since the snapshot was counted; every other key must be live.
        if not keys - volatile <= result["live_keys"] <= keys:
            raise StackError(f"restored {name} over the live Redis, but it holds {result['live_keys']} keys where "
                             f"the snapshot has {keys} ({volatile} of them with a TTL): check the nodes' logs; "
                             f"the data it replaced is in {result['moved_aside']}")
    return result


def _move_aside(data_dir: Path, stamp: str) -> Path:
    aside = data_dir / f"replaced-{stamp}"
    aside.mkdir()
    for name in ("appendonly", "dump.rdb"):
        if (data_dir / name).exists():
            (data_dir / name).rename(aside / name)
    return aside


def _dbsize(port: int) -> int:
    out = subprocess.run(["redis-cli", "-p", str(port), "--user", "kredete", "--no-auth-warning", "DBSIZE"],
                         env={**os.environ, "REDISCLI_AUTH": local_secrets()["redis_default"]},
                         capture_output=True, text=True, check=False, timeout=10)
    return int(out.stdout.strip() or 0)


def _aof_back_on(port: int) -> None:
    """Turn AOF on at run time (Redis rewrites it from the loaded data) and wait for the rewrite to end, so a
    later restart loads the restored data from the AOF again."""
    from kredete.stack.redis import _cli, _info

    _cli(port, "CONFIG", "SET", "appendonly", "yes", user="admin")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        info = _info(port, "persistence", user="admin")
        if info.get("aof_enabled") == "1" and info.get("aof_rewrite_in_progress") == "0" \
                and info.get("aof_rewrite_scheduled") == "0":
            return
        time.sleep(0.2)
    raise StackError(f"redis on port {port}: the AOF rewrite after the restore did not finish in 120 s")


def _replace_live(rdb: Path, stamp: str) -> dict[str, Any]:
    from kredete.stack.redis import RedisServer

    server = RedisServer()
    server.stop()
    aside = _move_aside(server.data_dir, stamp)
    shutil.copy2(rdb, server.data_dir / "dump.rdb")
    os.chmod(server.data_dir / "dump.rdb", 0o644)
    # With AOF on Redis would load the (missing) AOF and ignore the RDB: start once without it.
    server.appendonly = False
    server.start()
    _aof_back_on(server.port)
    return {"replaced": True, "live_keys": _dbsize(server.port), "moved_aside": str(aside)}


def _replace_cluster(files: list[Path], stamp: str) -> dict[str, Any]:
    from kredete.stack.redis import RedisClusterServer

    masters = cluster_masters()
    by_slots = {f.stem.removeprefix("slots-"): f for f in files}
    if set(by_slots) != set(masters):
        raise StackError("the cluster's slot layout changed since the snapshot (snapshot: "
                         f"{', '.join(sorted(by_slots))}; now: {', '.join(sorted(masters))}): nothing was replaced")
    cluster = RedisClusterServer()
    cluster.stop()
    port_of = {port: slots for slots, port in masters.items()}
    for node in cluster.nodes:
        _move_aside(node.data_dir, stamp)
        node.appendonly = False  # see _replace_live
        if node.port in port_of:  # a master loads its range's file; a replica, left empty, copies its master
            shutil.copy2(by_slots[port_of[node.port]], node.data_dir / "dump.rdb")
            os.chmod(node.data_dir / "dump.rdb", 0o644)
    cluster.start()
    for node in cluster.nodes:
        _aof_back_on(node.port)
    return {"replaced": True, "live_keys": sum(_dbsize(p) for p in masters.values()),
            "moved_aside": f"replaced-{stamp} in each node's dir"}
