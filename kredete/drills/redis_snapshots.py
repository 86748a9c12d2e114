"""Redis RDB snapshots shipped to the backups bucket, and their restore.

AOF stays the primary persistence (appendfsync everysec); these snapshots are the off-host copy. A snapshot
is streamed from the running server with `redis-cli --rdb` as the ACL user `backup` (it may only SYNC: no
key access), its password passed in REDISCLI_AUTH (never on the command line), and stored as
`s3://<prefix>-backups/redis/<UTC time>.rdb` with SSE-KMS (object lock applies as to every backup).
Schedule it like the database backups, e.g. `*/15 * * * * kredete backup redis`.

A restore downloads a snapshot into an empty dir and proves it by loading it in a scratch redis-server on a
free port (key count); `replace=True` stops the local Redis, moves its AOF and RDB aside, starts it on the
snapshot (Redis 7 rebuilds the AOF from the loaded data), and reports the key count.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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


def _redis_port() -> int:
    from config import ports

    return ports.REDIS


def take_snapshot(path: Path) -> int:
    """Stream an RDB from the running Redis into `path`; returns its size."""
    env = {**os.environ, "REDISCLI_AUTH": local_secrets()["redis_backup"]}
    proc = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(_redis_port()), "--user", "backup",
                           "--no-auth-warning", "--rdb", str(path)], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    if proc.returncode != 0 or not path.exists():
        raise StackError(f"redis-cli --rdb failed ({proc.returncode}): {(proc.stdout + proc.stderr).strip()[-300:]}")
    return path.stat().st_size


def backup() -> dict[str, Any]:
    """Take a snapshot and put it in the backups bucket (SSE-KMS); audited by the caller."""
    from stores.objects.buckets import LOCAL_KMS_KEY_ID

    key = f"{PREFIX}{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}.rdb"
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kredete-rdb-") as tmp:
        path = Path(tmp) / "dump.rdb"
        size = take_snapshot(path)
        data = path.read_bytes()

    async def put() -> None:
        extra = {"ServerSideEncryption": "aws:kms"}
        if urlsplit(resolve().s3_url or "").hostname in ("127.0.0.1", "localhost"):
            extra["SSEKMSKeyId"] = LOCAL_KMS_KEY_ID
        objects = _objects()
        try:
            async with objects.client() as s3:
                await s3.put_object(Bucket=_bucket(), Key=key, Body=data, **extra)
        finally:
            await objects.close()

    asyncio.run(put())
    return {"key": key, "bucket": _bucket(), "bytes": size, "seconds": round(time.monotonic() - t0, 2)}


def snapshots() -> list[str]:
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


def count_keys(rdb_dir: Path) -> int:
    """Load `rdb_dir/dump.rdb` in a scratch redis-server (free port, no persistence) and count its keys."""
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(rdb_dir),
                             "--dbfilename", "dump.rdb", "--appendonly", "no", "--save", ""],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = subprocess.run(["redis-cli", "-p", str(port), "DBSIZE"], capture_output=True, text=True,
                                 check=False, timeout=5)
            if out.returncode == 0 and out.stdout.strip().isdigit():
                return int(out.stdout.strip())
            if proc.poll() is not None:
                raise StackError("redis-server refused the snapshot (not a valid RDB file?)")
            time.sleep(0.2)
        raise StackError("the scratch redis-server did not load the snapshot in 60 s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def restore(snapshot: str = "latest", *, target_dir: Path | None = None, replace: bool = False) -> dict[str, Any]:
    """Restore a snapshot into an empty dir (verified by loading it), or over the local Redis (`replace`)."""
    available = snapshots()
    if not available:
        raise StackError(f"no Redis snapshot in s3://{_bucket()}/{PREFIX} (run `kredete backup redis`)")
    key = available[-1] if snapshot == "latest" else (snapshot if snapshot.startswith(PREFIX) else PREFIX + snapshot)
    if key not in available:
        raise StackError(f"unknown Redis snapshot {snapshot!r}; the bucket holds: "
                         f"{', '.join(k.removeprefix(PREFIX) for k in available[-10:])}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    dest = (target_dir or local_dir() / "restores" / f"redis-{stamp}").resolve()
    if dest.exists() and any(dest.iterdir()):
        raise StackError(f"target dir {dest} is not empty: nothing was restored")
    dest.mkdir(parents=True, exist_ok=True)
    _download(key, dest / "dump.rdb")
    keys = count_keys(dest)
    result: dict[str, Any] = {"snapshot": key, "target_dir": str(dest), "keys": keys, "replaced": False}
    if replace:
        result.update(_replace_live(dest / "dump.rdb", stamp))
    return result


def _replace_live(rdb: Path, stamp: str) -> dict[str, Any]:
    from kredete.stack.redis import RedisServer

    server = RedisServer()
    server.stop()
    aside = server.data_dir / f"replaced-{stamp}"
    aside.mkdir()
    for name in ("appendonly", "dump.rdb"):
        if (server.data_dir / name).exists():
            (server.data_dir / name).rename(aside / name)
    shutil.copy2(rdb, server.data_dir / "dump.rdb")
    # With no AOF present, Redis 7 loads the RDB and writes a new AOF base from it.
    server.start()
    out = subprocess.run(["redis-cli", "-p", str(server.port), "--user", "kredete", "--no-auth-warning", "DBSIZE"],
                         env={**os.environ, "REDISCLI_AUTH": local_secrets()["redis_default"]},
                         capture_output=True, text=True, check=False, timeout=10)
    return {"replaced": True, "live_keys": int(out.stdout.strip() or 0), "moved_aside": str(aside)}
