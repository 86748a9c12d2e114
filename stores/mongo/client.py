"""MongoDB adapter (motor) against any MongoDB-wire server."""

from __future__ import annotations

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase
from pymongo import MongoClient
from pymongo.errors import ConfigurationError, InvalidURI, OperationFailure, PyMongoError

from stores.errors import StoreConfigError, StoreUnavailable, redact_url


class MongoStore:
    """One motor client and the credit-store database."""

    def __init__(self, url: str, db_name: str = "kredete", *, timeout: float = 5.0) -> None:
        self._url = url
        self._db_name = db_name
        self._timeout_ms = int(timeout * 1000)
        self.client: AsyncIOMotorClient | None = None

    async def connect(self) -> MongoStore:
        try:
            self.client = AsyncIOMotorClient(
                self._url, serverSelectionTimeoutMS=self._timeout_ms, connectTimeoutMS=self._timeout_ms,
                socketTimeoutMS=max(self._timeout_ms * 2, 10_000), tz_aware=True, uuidRepresentation="standard",
                retryWrites=False,  # FerretDB 1.x has no retryable writes; retries are ours (tenacity)
            )
        except (InvalidURI, ConfigurationError, ValueError) as exc:
            raise StoreConfigError(f"malformed MongoDB URL {redact_url(self._url)}", store="mongo") from exc
        await self.ping()
        return self

    @property
    def db(self) -> AsyncIOMotorDatabase:
        if self.client is None:
            raise StoreUnavailable("MongoDB adapter is not connected", store="mongo")
        return self.client[self._db_name]

    async def ping(self) -> bool:
        try:
            res = await self.db.command("ping")
        except OperationFailure as exc:
            raise StoreConfigError(f"MongoDB refused the ping ({exc.code})", store="mongo") from exc
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB at {redact_url(self._url)} is unreachable ({type(exc).__name__})",
                                   store="mongo") from exc
        return res.get("ok") == 1.0

    async def health(self) -> dict[str, object]:
        info = await self.db.command("buildInfo")
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
        if self.client is not None:
            self.client.close()
            self.client = None


def answers_ping(url: str, timeout: float = 1.5) -> bool:
    """Whether a MongoDB-wire server answers a ping at `url` (blocking: a health probe outside an event loop)."""
    ms = int(timeout * 1000)
    try:
        with MongoClient(url, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms) as client:
            return client.admin.command("ping").get("ok") == 1.0
    except Exception:  # a probe: whatever failed, the server is not healthy
        return False
