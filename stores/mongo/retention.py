"""Retention job: delete documents whose `expires_at` has passed, and outbox events every consumer has read.

On a server with TTL indexes this is a harmless backstop (the TTL monitor runs every 60 s); on
FerretDB 1.x, which refuses `expireAfterSeconds`, it is what enforces retention. Feedback, predictions
and training data have no `expires_at` and are never touched. Outbox events have no TTL: they go only
when older than `OUTBOX_RETENTION` and passed by every registered consumer (`Outbox.prune`).
`stores.mongo.jobs` runs this periodically inside the MCP server; `kredete mongo retention` runs it once.
"""

from __future__ import annotations

from datetime import datetime

from motor.motor_asyncio import AsyncIOMotorDatabase

from stores.mongo.cdc import Outbox
from stores.mongo.collections import OUTBOX, SPEC_BY_NAME, TTL_COLLECTIONS
from stores.mongo.documents import _utc_ms, now


async def purge_expired(db: AsyncIOMotorDatabase, *, at: datetime | None = None,
                        collections: tuple[str, ...] = TTL_COLLECTIONS, outbox: bool = True,
                        dry_run: bool = False) -> dict[str, int]:
    """Delete (or count, with `dry_run`) expired documents per collection, and prune the outbox."""
    cutoff = _utc_ms(at) if at else now()
    out: dict[str, int] = {}
    for name in collections:
        spec = SPEC_BY_NAME[name]
        if not spec.ttl_field:
            raise ValueError(f"{name} has no expiry field")
        flt = {spec.ttl_field: {"$lt": cutoff}}
        if dry_run:
            out[name] = await db[name].count_documents(flt)
        else:
            out[name] = (await db[name].delete_many(flt)).deleted_count
    if outbox:
        out[OUTBOX] = await Outbox(db).prune(at=cutoff, dry_run=dry_run)
    return out



async def count_older(db: AsyncIOMotorDatabase, collection: str, field: str, cutoff: datetime) -> int:
    """Documents of `collection` whose `field` is before `cutoff` (the retention policy's age-based datasets)."""
    return await db[collection].count_documents({field: {"$lt": _utc_ms(cutoff)}})


async def purge_older(db: AsyncIOMotorDatabase, collection: str, field: str, cutoff: datetime) -> int:
    """Delete them; returns how many went."""
    return (await db[collection].delete_many({field: {"$lt": _utc_ms(cutoff)}})).deleted_count
