"""MongoDB adapter (PyMongo async) against any MongoDB-wire server."""

from __future__ import annotations

import contextlib
import time
import weakref

from pymongo import AsyncMongoClient, MongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConfigurationError, DuplicateKeyError, InvalidURI, OperationFailure, PyMongoError

from stores.breaker import Breaker
from stores.errors import StoreConfigError, StoreUnavailable, redact_url
from stores.metrics import MONGO_POOLS
from stores.mongo.backend_keyset import BackendKeyset, register_keyset

#: The collection a probe reads (FerretDB answers for a collection it does not know without asking its
#: backend, so a probe reads one every credit store has).
PROBE_COLLECTION = "credit_reports"
#: The breaker of each client a MongoStore made, for repositories handed the database rather than the store.
_BREAKERS: weakref.WeakKeyDictionary[AsyncMongoClient, Breaker] = weakref.WeakKeyDictionary()


def breaker_of(db: AsyncDatabase) -> Breaker | None:
    """The breaker of the MongoStore whose client `db` belongs to (None for a client made elsewhere)."""
    return _BREAKERS.get(db.client)


class MongoStore:
    """One PyMongo async client and the credit-store database.

    `breaker` (named `name`) refuses calls at once after consecutive outage failures (FerretDB down, or its
    PostgreSQL backend down) until a probe, a point read that reaches the backend, answers.

    `backend_url`: FerretDB's PostgreSQL database, when the server is the stack's FerretDB; it gives `keyset`
    (`stores.mongo.backend_keyset`), which serves the sorted pages FerretDB cannot (the dispute queue).
    """

    def __init__(self, url: str, db_name: str = "kredete", *, timeout: float = 5.0, name: str = "mongo",
                 backend_url: str | None = None) -> None:
        self._url = url
        self._db_name = db_name
        self._timeout_ms = int(timeout * 1000)
        self.client: AsyncMongoClient | None = None
        self.breaker = Breaker(name, probe=self.probe)
        self.keyset = BackendKeyset(backend_url, db_name, timeout=timeout) if backend_url else None

    async def connect(self) -> MongoStore:
        try:
            self.client = AsyncMongoClient(
                self._url, serverSelectionTimeoutMS=self._timeout_ms, connectTimeoutMS=self._timeout_ms,
                socketTimeoutMS=max(self._timeout_ms * 2, 10_000), tz_aware=True, uuidRepresentation="standard",
                retryWrites=False,  # FerretDB 1.x has no retryable writes; retries are ours (tenacity)
                event_listeners=[MONGO_POOLS],  # pool gauges on /metrics
            )
        except (InvalidURI, ConfigurationError, ValueError) as exc:
            raise StoreConfigError(f"malformed MongoDB URL {redact_url(self._url)}", store="mongo") from exc
        _BREAKERS[self.client] = self.breaker
        if self.keyset is not None:  # the outbox and the jobs, handed the database, find it (`keyset_of`)
            register_keyset(self.client, self.keyset)
        await self.ping()
        return self

    @property
    def db_name(self) -> str:
        return self._db_name

    @property
    def db(self) -> AsyncDatabase:
        if self.client is None:
            raise StoreUnavailable("MongoDB adapter is not connected", store="mongo")
        return self.client[self._db_name]

    async def ping(self) -> bool:
        from stores.mongo.errors import is_outage

        try:
            res = await self.db.command("ping")
        except OperationFailure as exc:
            if is_outage(exc):  # FerretDB up, its backend down
                raise StoreUnavailable(f"MongoDB cannot serve now (code {exc.code})", store="mongo") from exc
            raise StoreConfigError(f"MongoDB refused the ping ({exc.code})", store="mongo") from exc
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB at {redact_url(self._url)} is unreachable ({type(exc).__name__})",
                                   store="mongo") from exc
        return res.get("ok") == 1.0

    async def probe(self) -> None:
        """A real round trip to the data (the breaker's probe, health): `ping` alone is answered by FerretDB
        without its backend while it knows no database, so a point read of a collection follows it."""
        if self.client is None:
            raise StoreUnavailable("MongoDB adapter is not connected", store="mongo")
        db = self.client[self._db_name]
        await db.command("ping")
        await db[PROBE_COLLECTION].find_one({"_id": {"$eq": "__probe__"}}, {"_id": 1})

    async def health(self) -> dict[str, object]:
        info = await self.db.command("buildInfo")
        await self.probe()
        return {"ok": await self.ping(), "version": info.get("version"),
                "ferretdb": "ferretdb" in info}

    async def drop_database(self) -> None:
        """Delete this store's whole database (the isolated datasets of tests, evals and benchmarks)."""
        try:
            await self.db.client.drop_database(self._db_name)
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB could not drop {self._db_name} ({type(exc).__name__})",
                                   store="mongo") from exc

    async def close(self) -> None:
        await self.breaker.close()
        if self.keyset is not None:
            await self.keyset.close()
        if self.client is not None:
            await self.client.close()
            self.client = None


def answers_ping(url: str, timeout: float = 1.5) -> bool:
    """Whether a MongoDB-wire server serves at `url`: a ping, then a write and a read of one document in
    `kredete_health.probe`, which FerretDB can only answer through its backend (blocking: a health probe
    outside an event loop)."""
    ms = int(timeout * 1000)
    try:
        with MongoClient(url, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, socketTimeoutMS=ms) as client:
            if client.admin.command("ping").get("ok") != 1.0:
                return False
            coll = client["kredete_health"]["probe"]
            with contextlib.suppress(DuplicateKeyError):  # two checks upserting at once: both reached the backend
                coll.update_one({"_id": "stack"}, {"$set": {"at": time.time()}}, upsert=True)
            return coll.find_one({"_id": "stack"}) is not None
    except Exception:  # a probe: whatever failed, the server is not healthy
        return False
