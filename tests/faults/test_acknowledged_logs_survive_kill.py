"""kill -9 of the process that acknowledged AI-log records while the credit store is down (killed too):
a new process drains the durable local queue once the store is back, and every acknowledged record is stored
exactly once."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid

import pytest

from kredete.faults.processes import PrivateFerretDB
from stores.mongo import collections as names
from stores.mongo.ai_logging import AILogger
from stores.mongo.client import MongoStore
from stores.mongo.collections import ensure_schema

#: The writer: feedback records through the AI logger, printing each id once `log_feedback` returned it.
WRITER = """
import asyncio, sys, uuid
from stores.mongo.ai_logging import AILogger
from stores.mongo.client import MongoStore

async def main(url, db, queue, user):
    store = MongoStore(url, db, timeout=0.5)
    try:
        await store.connect()
    except Exception:
        pass  # the store is down: the client is kept, the logger queues
    logger = await AILogger(store, queue=queue).start()
    i = 0
    while True:
        rid = await logger.log_feedback(uuid.uuid4().hex, user, score=4, label="helpful", comment=f"n{i}",
                                        principal_subject="faults")
        print(rid, flush=True)
        i += 1

asyncio.run(main(*sys.argv[1:]))
"""


@pytest.fixture
def ferret(session_stack, tmp_path):
    session_stack.need(["mongo"])  # its PostgreSQL backend
    server = PrivateFerretDB(tmp_path / "ferretdb")
    server.start()
    yield server
    server.stop()


def _write_then_kill9(url: str, db: str, queue: str, user: str, log) -> list[str]:
    """Run the writer until it acknowledged 100 records, kill -9 it mid-stream; every id it acknowledged."""
    writer = subprocess.Popen([sys.executable, "-c", WRITER, url, db, queue, user], stdout=subprocess.PIPE,
                              stderr=log, text=True, start_new_session=True, env={**os.environ})
    acked: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while len(acked) < 100 and time.monotonic() < deadline:
            line = writer.stdout.readline()
            if not line:
                break
            acked.append(line.strip())
        os.killpg(writer.pid, signal.SIGKILL)  # mid-stream: it was still acknowledging records
        acked += [x.strip() for x in writer.stdout.read().splitlines() if x.strip()]
        writer.wait(10)
    finally:
        if writer.poll() is None:
            os.killpg(writer.pid, signal.SIGKILL)
    return acked


async def test_acknowledged_records_survive_kill9_of_the_process_while_the_store_is_down(ferret, tmp_path):
    name = f"kredete_test_faults_{secrets.token_hex(4)}"
    store = await MongoStore(ferret.url(), name, timeout=2.0).connect()
    await ensure_schema(store.db)
    await store.close()
    queue, user = tmp_path / "queue" / "ai-log.sqlite", str(uuid.uuid4())
    ferret.kill9()  # the credit store is down for real before the first record
    with (tmp_path / "writer.log").open("w") as log:
        acked = await asyncio.to_thread(_write_then_kill9, ferret.url(), name, str(queue), user, log)
    assert len(acked) >= 100, (tmp_path / "writer.log").read_text()[-2000:]
    assert "None" not in acked

    await asyncio.to_thread(ferret.start)
    store = await MongoStore(ferret.url(), name, timeout=2.0).connect()
    try:
        logger = await AILogger(store, queue=queue).start()  # a new process's logger: drains what is queued
        assert await logger.flush(60), logger.stats
        await logger.stop()
        stored = [d["_id"] async for d in store.db[names.FEEDBACK_SIGNALS].find({"user_id": user}, {"_id": 1})]
        assert len(stored) == len(set(stored)), "a record was stored twice"
        assert set(acked) <= set(stored), f"{len(set(acked) - set(stored))} acknowledged records lost"
    finally:
        await store.client.drop_database(name)
        await store.close()
