"""Periodic maintenance of the credit store inside a long-running process (the MCP server).

- retention: `purge_expired` (expired logs and write claims, outbox events every consumer has read);
- outbox reconciliation: `Outbox.reconcile` over a look-back window (re-emits events lost between a
  write and its outbox insert; the server has no multi-document transactions).

Each run is bounded by a timeout; a failure is logged and retried at the next tick (`stores.periodic`).
On FerretDB's PostgreSQL backend both read by range through PostgreSQL's btree indexes (the store's keyset,
`stores.mongo.backend_keyset.keyset_of`), not by finds FerretDB would answer with a scan of whole collections.
"""

from __future__ import annotations

from datetime import timedelta

from pymongo.asynchronous.database import AsyncDatabase

from stores.mongo.documents import now
from stores.periodic import Jobs, Periodic


class MaintenanceJobs(Jobs):
    """The credit store's background jobs; an interval of 0 disables a job."""

    def __init__(self, db: AsyncDatabase, *, retention_interval: float, reconcile_interval: float,
                 reconcile_lookback: float) -> None:
        from stores.mongo.cdc import Outbox
        from stores.mongo.retention import purge_expired

        async def reconcile() -> dict[str, int]:
            window = max(reconcile_lookback, 2 * reconcile_interval)  # consecutive windows overlap
            return {"reemitted": await Outbox(db).reconcile(now() - timedelta(seconds=window))}

        jobs: dict[str, Periodic] = {}
        if retention_interval > 0:
            jobs["retention"] = Periodic("mongo retention", lambda: purge_expired(db), interval=retention_interval)
        if reconcile_interval > 0:
            jobs["reconcile_outbox"] = Periodic("mongo reconcile_outbox", reconcile, interval=reconcile_interval)
        super().__init__(jobs, task_prefix="mongo-job")
