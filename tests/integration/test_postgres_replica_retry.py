"""A replica that is down when the pool connects (or goes down later) is retried; reads come back to it.

The replica is reached through a TCP forwarder of our own on a free port, which the test opens and closes:
the shared replica itself is never stopped.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from config.ports import free_port
from stores.postgres import PostgresStore


class Forwarder:
    """127.0.0.1:<port> -> 127.0.0.1:<target>, started and stopped at will (stopping drops every connection)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


async def _read_goes_to_replica(store: PostgresStore) -> bool:
    async with store.connection(replica=True) as conn:
        return await conn.fetchval("SELECT pg_is_in_recovery()")


async def _eventually_on_replica(store: PostgresStore, want: bool, timeout: float = 15.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    seen = await _read_goes_to_replica(store)
    while seen is not want and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        seen = await _read_goes_to_replica(store)
    return seen


@pytest.fixture
async def forwarder(settings):
    from config import ports

    fwd = Forwarder(ports.POSTGRES_REPLICA)
    yield fwd
    await fwd.stop()


async def test_replica_down_at_connect_is_used_once_it_listens(settings, forwarder):
    from config import ports

    primary = settings.postgres_url.get_secret_value()
    # One replica only, reached through the forwarder (the settings' URL names both replicas).
    replica = primary.replace(f":{ports.POSTGRES}/", f":{forwarder.port}/")
    store = await PostgresStore(primary, replica, timeout=2.0, replica_retry_s=(0.2, 1.0)).connect()
    try:
        assert store.replica is None, "nothing listens on the replica port yet"
        assert await _read_goes_to_replica(store) is False, "reads fall back to the primary"
        assert (await store.health())["replica"] is False

        await forwarder.start()
        assert await _eventually_on_replica(store, True), "reads never came back to the replica"
        assert (await store.health())["replica"] is True

        # down again (every connection dropped): the next reads go to the primary, without an error
        # (a read in flight at that moment fails: it is not retried behind the caller's back)...
        await forwarder.stop()
        await asyncio.sleep(0.5)
        assert await _read_goes_to_replica(store) is False
        assert store.replica is None and "replica" in (await store.health())["replica_error"]
        # ...and back once it returns
        await forwarder.start()
        assert await _eventually_on_replica(store, True)
    finally:
        await store.close()
