"""Retention job: delete documents whose `expires_at` has passed, and outbox events every consumer has read.

On a server with TTL indexes this is a harmless backstop (the TTL monitor runs every 60 s); on
FerretDB 1.x, which refuses `expireAfterSeconds`, it is what enforces retention. Feedback, predictions
and training data have no `expires_at` and are never touched by it: `kredete retention` deletes the first two
by age (`purge_older`, the policy in config/retention.toml). Outbox events have no TTL: they go only
when older than `OUTBOX_RETENTION` and passed by every registered consumer (`Outbox.prune`).
`stores.mongo.jobs` runs this periodically inside the MCP server; `kredete mongo retention` runs it once.

On FerretDB's PostgreSQL backend (the store's keyset, `stores.mongo.backend_keyset`) the expired documents are
found on the btree index of the expiry field (`expiry_<field>`), and the age-based datasets' old documents
(`count_older` / `purge_older`) on their `created_at` index, and deleted one by one by `_id` (a pushed-down
equality, with the expiry condition again): FerretDB 1.24 answers the `$lt` of `delete_many`/`count_documents`
by reading and decoding every document of the collection, every minute.
"""

from __future__ import annotations

from datetime import datetime

from pymongo.asynchronous.database import AsyncDatabase

from stores.mongo.backend_keyset import BackendKeyset, Cond, MissingTable, delete_in_range, keyset_of
from stores.mongo.cdc import Outbox
from stores.mongo.collections import OUTBOX, SPEC_BY_NAME, TTL_COLLECTIONS
from stores.mongo.documents import _utc_ms, now


async def purge_expired(db: AsyncDatabase, *, at: datetime | None = None,
                        collections: tuple[str, ...] = TTL_COLLECTIONS, outbox: bool = True,
                        dry_run: bool = False, use_keyset: bool = True) -> dict[str, int]:
    """Delete (or count, with `dry_run`) expired documents per collection, and prune the outbox; `use_keyset`
    False: by the finds even on FerretDB's backend (the old way, for comparisons)."""
    keyset = keyset_of(db) if use_keyset else None
    cutoff = _utc_ms(at) if at else now()
    out: dict[str, int] = {}
    for name in collections:
        spec = SPEC_BY_NAME[name]
        if not spec.ttl_field:
            raise ValueError(f"{name} has no expiry field")
        out[name] = await _purge(db, name, spec.ttl_field, cutoff, dry_run, keyset)
    if outbox:
        out[OUTBOX] = await Outbox(db, use_keyset=use_keyset).prune(at=cutoff, dry_run=dry_run)
    return out


async def _purge(db: AsyncDatabase, name: str, fld: str, cutoff: datetime, dry_run: bool,
                 keyset: BackendKeyset | None, *, chunk: int = 1_000) -> int:
    flt = {fld: {"$lt": cutoff}}
    if keyset is not None:
        try:
            if dry_run:
                return await keyset.count(name, [Cond(fld, "<", cutoff)])
            # Documents whose expiry was extended meanwhile (not expired any more) are left.
            return await delete_in_range(db[name], keyset, fld, [Cond(fld, "<", cutoff)], flt, chunk=chunk)
        except MissingTable:
            pass
    return await db[name].count_documents(flt) if dry_run else (await db[name].delete_many(flt)).deleted_count


async def count_older(db: AsyncDatabase, collection: str, field: str, cutoff: datetime, *,
                      use_keyset: bool = True) -> int:
    """Documents of `collection` whose `field` is before `cutoff` (the retention policy's age-based datasets);
    on FerretDB's backend counted on the field's btree index."""
    return await _purge(db, collection, field, _utc_ms(cutoff), True, keyset_of(db) if use_keyset else None)


async def purge_older(db: AsyncDatabase, collection: str, field: str, cutoff: datetime, *,
                      use_keyset: bool = True) -> int:
    """Delete them (found on the index, deleted by `_id`, as expired documents are); returns how many went."""
    return await _purge(db, collection, field, _utc_ms(cutoff), False, keyset_of(db) if use_keyset else None)
