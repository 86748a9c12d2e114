"""S3 replication lag, primary MinIO -> DR MinIO, one run.

    python -m bench.s3_replication [--objects 200] [--size 65536] [--concurrency 8]

Puts `--objects` objects of `--size` bytes into the documents bucket as the document service (SSE-KMS,
object lock: what a customer upload is) with `--concurrency` writers, and for each one measures the time from
the primary's acknowledgement to the moment the same version id is readable on the DR server (polled every
20 ms), plus when the primary reports `x-amz-replication-status: COMPLETED`. Prints p50/p95/p99/max and writes
bench/results/s3_replication.json. Needs the local stack with `kredete s3 setup` applied.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results" / "s3_replication.json"
console = Console(width=None if sys.stdout.isatty() else 140)
POLL_S = 0.02


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


async def run(objects_n: int, size: int, concurrency: int) -> dict:
    from config.settings import resolve
    from stores.errors import NotFound
    from stores.objects.buckets import documents_bucket
    from stores.objects.principals import admin_objects, objects_for
    from stores.objects.setup import setup_all

    settings = resolve()
    await setup_all(settings)
    bucket = documents_bucket(settings.s3_bucket_prefix)
    writer = objects_for(settings, "documents")
    dr = admin_objects(settings, settings.s3_dr_url)
    run_id = secrets.token_hex(4)
    lags: list[float] = []
    completed: list[float] = []
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        key = f"bench/replication-{run_id}/{i:05d}.bin"
        async with sem:
            vid = await writer.put(bucket, key, os.urandom(size))
            acked = time.monotonic()
            seen_dr = seen_done = None
            while seen_dr is None or seen_done is None:
                now = time.monotonic()
                if now - acked > 120:
                    raise TimeoutError(f"{key} not replicated in 120 s")
                if seen_dr is None:
                    try:
                        await dr.head(bucket, key, version_id=vid)
                        seen_dr = time.monotonic() - acked
                    except NotFound:
                        pass
                if seen_done is None:
                    head = await writer.head(bucket, key, version_id=vid)
                    if head.get("ReplicationStatus") == "COMPLETED":
                        seen_done = time.monotonic() - acked
                await asyncio.sleep(POLL_S)
            lags.append(seen_dr)
            completed.append(seen_done)

    started = time.monotonic()
    with console.status(f"putting {objects_n} objects of {size} bytes"):
        await asyncio.gather(*(one(i) for i in range(objects_n)))
    wall = time.monotonic() - started
    await writer.close()
    await dr.close()

    def summary(v: list[float]) -> dict:
        return {"p50_ms": round(_pct(v, 50) * 1000, 1), "p95_ms": round(_pct(v, 95) * 1000, 1),
                "p99_ms": round(_pct(v, 99) * 1000, 1), "max_ms": round(max(v) * 1000, 1)}

    return {"when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.platform(),
            "cpus": os.cpu_count(), "objects": objects_n, "size_bytes": size, "concurrency": concurrency,
            "poll_interval_ms": POLL_S * 1000, "wall_s": round(wall, 2),
            "visible_on_dr": summary(lags), "primary_reports_completed": summary(completed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--size", type=int, default=64 * 1024)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    result = asyncio.run(run(args.objects, args.size, args.concurrency))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    table = Table(title=f"S3 replication lag, {args.objects} x {args.size} B, {args.concurrency} writers")
    for col in ("measure", "p50 ms", "p95 ms", "p99 ms", "max ms"):
        table.add_column(col)
    for name in ("visible_on_dr", "primary_reports_completed"):
        r = result[name]
        table.add_row(name, *(str(r[k]) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")))
    console.print(table)
    console.print(f"results: {RESULTS}")


if __name__ == "__main__":
    main()
