"""Kill -9 a (private) FerretDB mid-stream, restart it: every log record ends up stored exactly once."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal

import pytest

from config.ports import free_port
from kredete.stack.ferretdb import FerretDBServer
from stores.mongo.ai_logging import AILogger
from stores.mongo.client import MongoStore
from stores.mongo.collections import ensure_schema
from tests.integration.mongo.factories import uid


class PrivateFerretDB(FerretDBServer):
    """Our own instance: its own port, debug port and data dir; never the shared one."""

    def __init__(self, data_dir, port: int, debug_port: int) -> None:
        super().__init__()
        self.data_dir = data_dir
        self.port = port
        self.debug_port = debug_port

    def command(self):
        argv, env = super().command()
        return [a if not a.startswith("--debug-addr=") else f"--debug-addr=127.0.0.1:{self.debug_port}"
                for a in argv], env

    def kill9(self) -> None:
        pid = self.pid()
        assert pid
        os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def private_server(tmp_path, mongo_url):
    server = PrivateFerretDB(tmp_path / "ferretdb", free_port(), free_port())
    server.data_dir.mkdir(parents=True)
    server.start()
    yield server
    server.stop()


async def test_records_survive_server_kill_and_restart(private_server, tmp_path):
    n = 1200
    # The private server keeps its data in the shared PostgreSQL backend: the database must be dropped.
    name = f"kredete_test_restart_{secrets.token_hex(4)}"
    store = await MongoStore(private_server.url(), name, timeout=1.0).connect()
    try:
        await ensure_schema(store.db)
        logger = await AILogger(store, batch_size=25, max_retry_delay=0.3, queue=tmp_path / "q.sqlite").start()
        user, conv = uid(), uid()
        ids = set()
        for i in range(n):
            if i % 2:
                rid = await logger.log_prediction("m", "1", user, {"i": i}, {"ok": True}, 1.0)
            else:
                rid = await logger.log_conversation_turn(conv, user, "user", f"turn {i}", principal_subject="p")
            ids.add(rid)
            if i % 25 == 0:
                await asyncio.sleep(0.005)
            if i == n // 3:
                private_server.kill9()
            if i == n // 2:
                # Keep it down until the logger has hit the outage: an outage shorter than the client's server
                # selection timeout (1 s) can pass unseen, a write simply waiting for the server to come back.
                for _ in range(300):
                    if logger.stats.retries:
                        break
                    await asyncio.sleep(0.1)
                await asyncio.to_thread(private_server.start)
        assert await logger.flush(120), logger.stats
        stats = await logger.stop()
        assert None not in ids and len(ids) == n
        assert stats.dropped == 0 and stats.failed == 0 and stats.written == n
        assert stats.retries > 0, "the outage was never hit"
        stored = {d["_id"] async for d in store.db.llm_conversations.find({"user_id": user}, {"_id": 1})}
        stored |= {d["_id"] async for d in store.db.model_predictions.find({"user_id": user}, {"_id": 1})}
        total = (await store.db.llm_conversations.count_documents({"user_id": user})
                 + await store.db.model_predictions.count_documents({"user_id": user}))
        assert stored == ids and total == n
    finally:
        await store.client.drop_database(name)
        remaining = await store.client.list_database_names()
        await store.close()
    assert name not in remaining
