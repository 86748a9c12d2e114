"""Credit-store statistics: collection sizes (collStats) and outbox consumer lag."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from pymongo.errors import PyMongoError

from stores.errors import StoreUnavailable
from stores.mongo.cdc import Outbox
from stores.mongo.client import MongoStore
from stores.mongo.documents import now


class CollectionSize(BaseModel):
    collection: str
    bytes: int
    index_bytes: int
    documents: int


class ConsumerLag(BaseModel):
    """How far one registered outbox consumer is behind the newest event."""

    consumer: str
    checkpoint: int
    newest: int
    events: int
    #: Age of the oldest event the consumer has not passed (0 when caught up).
    seconds: float


class MongoStats:
    def __init__(self, store: MongoStore) -> None:
        self.store = store

    async def collection_sizes(self) -> list[CollectionSize]:
        db = self.store.db
        out: list[CollectionSize] = []
        try:
            for name in sorted(await db.list_collection_names()):
                st = await db.command("collStats", name)
                out.append(CollectionSize(collection=name, bytes=int(st.get("storageSize") or st.get("size") or 0),
                                          index_bytes=int(st.get("totalIndexSize") or 0),
                                          documents=int(st.get("count") or 0)))
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB statistics failed ({type(exc).__name__})", store="mongo") from exc
        return sorted(out, key=lambda c: c.bytes, reverse=True)

    async def outbox_lag(self, at: datetime | None = None, *, use_keyset: bool = True) -> list[ConsumerLag]:
        """Every registered consumer's lag (events and seconds) behind the newest outbox event (read by seq's index
        in FerretDB's PostgreSQL where the store has its keyset, unless `use_keyset` is False: the finds)."""
        db = self.store.db
        outbox = Outbox(db, use_keyset=use_keyset)
        at = at or now()
        try:
            consumers = await outbox.consumers()
            newest = await outbox.last_seq()
            out = []
            for name, seq in sorted(consumers.items()):
                first = await outbox.first_after(seq)
                age = 0.0
                if first is not None and first.get("at") is not None:
                    when = first["at"]
                    when = when if when.tzinfo else when.replace(tzinfo=at.tzinfo)
                    age = max(0.0, (at - when).total_seconds())
                out.append(ConsumerLag(consumer=name, checkpoint=seq, newest=newest,
                                       events=max(0, newest - seq), seconds=age))
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB outbox statistics failed ({type(exc).__name__})", store="mongo") from exc
        return out
