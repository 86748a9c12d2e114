"""A durable local queue: records a store must receive, kept on local disk until it has them.

What it is for: a write the caller is told was accepted (an AI-log record, the audit row of a refusal made
while the audit database was down) is first committed here, then drained to its store by whoever holds the
queue's drain lock, and removed only once the store has it. A kill -9 of the process at any point loses
nothing that `put` returned for.

* **Storage**: one SQLite file (WAL journal, `synchronous=FULL`: every commit is fsynced before `put`
  returns), safe to share between the processes of one host. Concurrent `put`s of a process are committed
  together (group commit: one fsync for all of them).
* **Draining**: one drainer per queue file and target at a time, chosen by an exclusive `flock` on a side
  file (released by the kernel when its holder dies, so a restarted process takes over at once). The drainer
  `peek`s the oldest records, writes them to the store, then `ack`s (deletes) them; a record written before
  a crash and written again after it must be idempotent at the store (client-generated ids).
* **Targets** keep apart records of different destinations in one file (e.g. two databases).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Gauge

from stores.errors import StoreUnavailable

log = logging.getLogger("kredete.stores.local_queue")

QUEUE_DEPTH = Gauge("kredete_local_queue_records", "Records waiting in a durable local queue for their store",
                    ["queue"])

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    target      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    payload     BLOB NOT NULL,
    enqueued_at REAL NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS records_target ON records (target, id);
"""


class QueueFull(StoreUnavailable):
    """The queue holds its maximum number of records: the new one is not accepted."""

    store = "local_queue"


@dataclass(frozen=True)
class Record:
    id: int
    kind: str
    payload: bytes
    attempts: int
    enqueued_at: float


def default_queue_dir() -> Path:
    """`KREDETE_QUEUE_DIR`, else `.local/queues` of the local stack's data dir."""
    from config.paths import local_dir
    from config.settings import get_settings

    configured = get_settings().queue_dir
    return Path(configured) if configured else local_dir() / "queues"


class DurableQueue:
    """One queue file. Thread-confined: every SQLite call runs on the queue's own single thread."""

    def __init__(self, path: str | os.PathLike[str], *, name: str | None = None,
                 max_records: int | None = None) -> None:
        from config.settings import get_settings

        self.path = Path(path)
        self.name = name or self.path.stem
        self.max_records = max_records or get_settings().queue_max_records
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"queue-{self.name}")
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[str, str, bytes, asyncio.Future[int]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._locks: dict[str, int] = {}

    # --- SQLite on the queue's thread ----------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # The records are redacted, but still name users: readable by this account only.
            self.path.touch(mode=0o600, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # fsync the WAL at every commit: a `put` survives power loss
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    async def _run(self, fn, *args):
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"local queue {self.name} failed ({type(exc).__name__})",
                                   store="local_queue") from exc

    def _insert(self, rows: list[tuple[str, str, bytes]]) -> list[int]:
        db = self._conn()
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            (count,) = db.execute("SELECT count(*) FROM records").fetchone()
            ids: list[int] = []
            for target, kind, payload in rows:
                if count >= self.max_records:
                    ids.append(-1)
                    continue
                cur = db.execute("INSERT INTO records (target, kind, payload, enqueued_at) VALUES (?, ?, ?, ?)",
                                 (target, kind, payload, now))
                ids.append(int(cur.lastrowid))
                count += 1
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        QUEUE_DEPTH.labels(queue=self.name).set(count)
        return ids

    def _peek(self, target: str, limit: int) -> list[Record]:
        rows = self._conn().execute(
            "SELECT id, kind, payload, attempts, enqueued_at FROM records WHERE target = ? ORDER BY id LIMIT ?",
            (target, limit)).fetchall()
        return [Record(id=r[0], kind=r[1], payload=bytes(r[2]), attempts=r[3], enqueued_at=r[4]) for r in rows]

    def _delete(self, ids: list[int]) -> None:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        db.executemany("DELETE FROM records WHERE id = ?", [(i,) for i in ids])
        db.execute("COMMIT")
        (count,) = db.execute("SELECT count(*) FROM records").fetchone()
        QUEUE_DEPTH.labels(queue=self.name).set(count)

    def _bump(self, ids: list[int]) -> None:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        db.executemany("UPDATE records SET attempts = attempts + 1 WHERE id = ?", [(i,) for i in ids])
        db.execute("COMMIT")

    def _count(self, target: str | None) -> int:
        sql, args = ("SELECT count(*) FROM records WHERE target = ?", (target,)) if target is not None else \
            ("SELECT count(*) FROM records", ())
        return int(self._conn().execute(sql, args).fetchone()[0])

    # --- API -----------------------------------------------------------------------------------------
    async def put(self, target: str, kind: str, payload: bytes) -> int:
        """Commit one record (fsynced) and return its id; QueueFull when the queue is at its maximum."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        self._pending.append((target, kind, payload, fut))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_pending(), name=f"queue-{self.name}-writer")
        record_id = await fut
        if record_id < 0:
            raise QueueFull(f"local queue {self.name} holds its maximum of {self.max_records} records")
        return record_id

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                ids = await self._run(self._insert, [(t, k, p) for t, k, p, _ in batch])
            except BaseException as exc:
                for *_, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc if isinstance(exc, Exception) else
                                          StoreUnavailable(f"local queue {self.name} interrupted"))
                if not isinstance(exc, Exception):
                    raise
                continue
            for (*_, fut), record_id in zip(batch, ids, strict=True):
                if not fut.done():
                    fut.set_result(record_id)

    async def peek(self, target: str, limit: int) -> list[Record]:
        """The oldest `limit` records of `target` (only the drainer should act on them)."""
        return await self._run(self._peek, target, limit)

    async def ack(self, ids: list[int]) -> None:
        """The store has these records: delete them."""
        if ids:
            await self._run(self._delete, list(ids))

    async def bump(self, ids: list[int]) -> None:
        """Count one more failed attempt for these records (a store's refusal, not an outage)."""
        if ids:
            await self._run(self._bump, list(ids))

    async def depth(self, target: str | None = None) -> int:
        """Records waiting (for one target, or all)."""
        return await self._run(self._count, target)

    # --- the drain lock ------------------------------------------------------------------------------
    def _lock_path(self, target: str) -> Path:
        digest = hashlib.sha256(target.encode()).hexdigest()[:16]
        return self.path.with_name(f"{self.path.name}.drain-{digest}.lock")

    def try_lock_drain(self, target: str) -> bool:
        """Become the one drainer of `target` on this host (non-blocking; True if held, also already)."""
        if target in self._locks:
            return True
        path = self._lock_path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._locks[target] = fd
        return True

    def unlock_drain(self, target: str) -> None:
        fd = self._locks.pop(target, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    async def close(self) -> None:
        """Finish pending puts, release drain locks, close the file."""
        if self._writer is not None and not self._writer.done():
            with contextlib.suppress(Exception):
                await self._writer
        for target in list(self._locks):
            self.unlock_drain(target)
        if self._db is not None:
            db, self._db = self._db, None
            await asyncio.get_running_loop().run_in_executor(self._executor, db.close)
        self._executor.shutdown(wait=False)
