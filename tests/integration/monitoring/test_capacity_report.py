"""`kredete capacity report` on real stores: a seeded dataset, and an empty database."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from config.paths import REPO_ROOT
from evals.harness import Dataset

KREDETE = str(REPO_ROOT / ".venv" / "bin" / "kredete")
pytestmark = pytest.mark.timeout(600)


def report(env: dict[str, str], out) -> tuple[subprocess.CompletedProcess, dict]:
    proc = subprocess.run([KREDETE, "capacity", "report", "--out", str(out), "--months", "24"], capture_output=True,
                          text=True, timeout=300, env={**env, "COLUMNS": "200"}, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, json.loads((out / "capacity.json").read_text())


def test_seeded_dataset(stack, tmp_path):
    import asyncio

    ds = Dataset("capacity", users=20, seed=5)
    ds.prepare()
    bucket = f"{ds.index_prefix}-documents"

    async def put_documents() -> None:
        from stores.registry import connect

        stores = await connect(("objects",), settings=ds.settings())
        try:
            await stores.objects.ensure_bucket(bucket)
            for i in range(3):
                await stores.objects.put(bucket, f"capacity/doc-{i}.txt", b"x" * 1000)
        finally:
            await stores.close()

    asyncio.run(put_documents())
    proc, body = report(ds.env, tmp_path)
    stores = {s["store"]: s for s in body["stores"]}
    assert body["users"] == 20 and body["empty"] is False
    pg = stores["postgres"]
    tables = {i["name"]: i for i in pg["items"]}
    # Partitioned tables are folded into their parent, with rows and bytes.
    assert tables["transactions"]["rows"] > 0 and tables["transactions"]["bytes"] > 0
    assert "transactions_2" not in " ".join(tables)  # no partition listed on its own
    assert tables["users"]["rows"] == 20 and tables["users"]["per_user_rows"] == 1
    assert stores["mongo"]["rows"] > 0
    buckets = {i["name"]: i for i in stores["s3"]["items"]}
    assert buckets[bucket]["rows"] >= 3 and buckets[bucket]["bytes"] >= 3000  # every version counted
    assert all(s["per_user_bytes"] > 0 for s in stores.values() if not s["error"] and s["bytes"])
    assert len(pg["projection_bytes"]) == 25
    assert pg["projection_bytes"][24] == pytest.approx(pg["bytes"] * 1.15 ** 24)
    assert (tmp_path / "capacity.png").stat().st_size > 10_000
    assert body["headline"][:40] in proc.stdout


def test_empty_database_says_so(stack, tmp_path):
    import asyncio

    from kredete.ops.alert_drills import Scratch

    scratch = Scratch()

    async def make() -> None:
        from stores.postgres import PostgresStore

        admin = await PostgresStore(scratch.url("postgres")).connect()
        async with admin.connection() as conn:
            await conn.execute(f"CREATE DATABASE {scratch.database}")
        await admin.close()

    async def drop() -> None:
        from stores.postgres import PostgresStore

        admin = await PostgresStore(scratch.url("postgres")).connect()
        async with admin.connection() as conn:
            await conn.execute(f"DROP DATABASE IF EXISTS {scratch.database} WITH (FORCE)")
        await admin.close()

    asyncio.run(make())
    try:
        env = {**os.environ, "KREDETE_POSTGRES_DB": scratch.database, "KREDETE_MONGO_DB": scratch.database,
               "KREDETE_INDEX_PREFIX": f"empty-{scratch.id}", "KREDETE_S3_BUCKET_PREFIX": f"empty-{scratch.id}"}
        proc, body = report(env, tmp_path)
    finally:
        asyncio.run(drop())
    assert body["empty"] is True and body["users"] == 0
    assert "empty" in proc.stdout
    assert all(s["per_user_bytes"] is None for s in body["stores"])
    assert "ZeroDivision" not in proc.stderr and (tmp_path / "capacity.png").exists()
