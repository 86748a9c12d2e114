"""RetentionService: the retention policy (`config/retention.toml`) applied to the stores, or planned.

Each dataset the policy gives to `retention` is acted on here; datasets the servers enforce (Redis TTLs, the S3
lifecycle) are checked against the declared configuration; kept datasets are listed with their reason.

`audit_logs` partitions follow the archive path: once a month is closed (`archive_after_days`) its partition is
exported (rows with their canonical text) and put in the logs bucket under a COMPLIANCE lock (`archive_days`) by
the `archiver` principal, read back by the `auditor` and verified (sha256, every hash, every link inside its
segments) before it counts as archived; past `days` it is dropped, and `kredete db verify-audit` still verifies
the chain across the gap from the recorded segments.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from config.retention import Dataset, RetentionPolicy, load_policy
from config.settings import Settings, resolve
from stores.errors import InvalidData, StoreError
from stores.mongo import retention as mongo_retention
from stores.mongo.collections import SPEC_BY_NAME
from stores.objects.buckets import SPECS as BUCKET_SPECS
from stores.objects.buckets import logs_bucket
from stores.objects.client import ObjectStore
from stores.objects.privacy import put_record
from stores.postgres import AuditRepository, PostgresStore
from stores.postgres.audit_archive import AuditArchiveRepository, Partition, encode_rows, verify_archived_rows
from stores.postgres.models import AuditEntry
from stores.postgres.retention import PURGES, RetentionRepository
from stores.search import retention as search_retention


@dataclass
class Item:
    """One dataset's line of a plan or a run."""

    dataset: str
    action: str
    enforced_by: str
    what: str
    count: int = 0
    done: int = 0
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def _month_end(month: date) -> datetime:
    y, m = divmod(month.year * 12 + month.month, 12)
    return datetime(y, m + 1, 1, tzinfo=UTC)


def archive_key(partition: str, month: date, what: str) -> str:
    return f"audit/audit_logs/{month:%Y-%m}/{partition}.{what}"


class RetentionService:
    def __init__(self, settings: Settings, policy: RetentionPolicy, *, postgres: PostgresStore | None = None,
                 mongo: Any = None, search: Any = None, archiver: ObjectStore | None = None,
                 auditor: ObjectStore | None = None, actor: str = "retention") -> None:
        self.settings, self.policy = settings, policy
        self.postgres, self.mongo, self.search = postgres, mongo, search
        self.archiver, self.auditor = archiver, auditor
        self.actor = actor

    @classmethod
    async def open(cls, settings: Settings | None = None, *, policy_path: str | None = None) -> RetentionService:
        from stores.mongo import MongoStore
        from stores.objects.principals import objects_for
        from stores.registry import build_postgres
        from stores.search import SearchStore

        s = resolve(settings)
        policy = load_policy(policy_path or s.retention_policy)
        postgres = await build_postgres(s).connect()
        mongo = search = None
        try:
            mongo = await MongoStore(s.mongo_url.get_secret_value(), s.mongo_db, timeout=s.connect_timeout_s).connect()
        except StoreError:
            mongo = None
        try:
            search = await SearchStore(s.opensearch_url.get_secret_value(), prefix=s.index_prefix).connect()
        except StoreError:
            search = None
        return cls(s, policy, postgres=postgres, mongo=mongo, search=search, archiver=objects_for(s, "archiver"),
                   auditor=objects_for(s, "auditor"))

    async def close(self) -> None:
        for store in (self.archiver, self.auditor, self.search, self.mongo, self.postgres):
            if store is not None:
                await store.close()

    # --- plan and run --------------------------------------------------------------------------------
    async def plan(self, now: datetime | None = None) -> list[Item]:
        return await self._walk(now or datetime.now(UTC), apply=False)

    async def run(self, now: datetime | None = None, *, on_item: Callable[[Item], None] | None = None) -> list[Item]:
        items = await self._walk(now or datetime.now(UTC), apply=True, on_item=on_item)
        if self.postgres is not None:
            await AuditRepository(self.postgres).append(AuditEntry(
                actor_subject=self.actor, actor_role="retention_job", action="retention.run",
                decision="error" if any(i.error for i in items) else "allowed",
                metadata={i.dataset: {"done": i.done, **({"error": i.error} if i.error else {})} for i in items
                          if i.done or i.error}))
        return items

    async def _walk(self, now: datetime, *, apply: bool, on_item: Callable[[Item], None] | None = None) -> list[Item]:
        items = []
        for ds in self.policy.dataset:
            item = Item(ds.name, ds.action, ds.enforced_by, "")
            try:
                await self._one(ds, item, now, apply)
            except (StoreError, InvalidData) as exc:
                item.error = str(exc)[:300]
            items.append(item)
            if on_item is not None:
                on_item(item)
        return items

    async def _one(self, ds: Dataset, item: Item, now: datetime, apply: bool) -> None:
        cutoff = now - timedelta(days=ds.days)
        if ds.enforced_by == "none":
            item.what = f"kept {ds.days} days: {ds.why}"
        elif ds.name == "postgres.audit_logs":
            await self._audit_logs(ds, item, now, apply)
        elif ds.name in PURGES:
            repo = RetentionRepository(self._need(self.postgres, "postgres"))
            item.count = await repo.count(ds.name, cutoff)
            item.what = f"delete rows ended before {cutoff:%Y-%m-%d}"
            if apply and item.count:
                item.done = await repo.purge(ds.name, cutoff)
        elif ds.name.startswith("mongo."):
            await self._mongo(ds, item, cutoff, apply)
        elif ds.name.startswith("opensearch."):
            await self._search(ds, item, now, apply)
        elif ds.name.startswith("s3."):
            self._s3(ds, item)
        elif ds.name == "redis":
            item.what = "TTLs on every cache and rate-limit key (server-enforced)"
        else:
            raise InvalidData(f"no retention handler for dataset {ds.name}", store="retention")

    @staticmethod
    def _need(store: Any, name: str) -> Any:
        if store is None:
            raise StoreError(f"{name} is unavailable", store=name)
        return store

    # --- datasets ------------------------------------------------------------------------------------
    async def _mongo(self, ds: Dataset, item: Item, cutoff: datetime, apply: bool) -> None:
        db = self._need(self.mongo, "credit_store").db
        name = ds.name.removeprefix("mongo.")
        if name == "outbox_events":
            item.what = "prune events every consumer has passed (and older than 7 days)"
            res = await mongo_retention.purge_expired(db, collections=(), outbox=True, dry_run=not apply)
            item.count = item.done = res.get(name, 0)
            if not apply:
                item.done = 0
            return
        spec = SPEC_BY_NAME[name]
        if spec.ttl_field:  # expiry set at write time (KREDETE_LOG_RETENTION_DAYS)
            item.what = f"delete documents past their {spec.ttl_field}"
            count = (await mongo_retention.purge_expired(db, collections=(name,), outbox=False, dry_run=True))[name]
            item.count = count
            if apply and count:
                item.done = (await mongo_retention.purge_expired(db, collections=(name,), outbox=False))[name]
        else:
            item.what = f"delete documents created before {cutoff:%Y-%m-%d}"
            item.count = await mongo_retention.count_older(db, name, "created_at", cutoff)
            if apply and item.count:
                item.done = await mongo_retention.purge_older(db, name, "created_at", cutoff)

    async def _search(self, ds: Dataset, item: Item, now: datetime, apply: bool) -> None:
        search = self._need(self.search, "opensearch")
        family = ds.name.removeprefix("opensearch.")
        kw = {"rollover_days": ds.rollover_days or ds.days, "retention_days": ds.days, "now": now}
        res = await (search_retention.run if apply else search_retention.plan)(search, family, "occurred_at", **kw)
        item.count = len(res["delete"]) + int(res["rollover"])
        item.done = item.count if apply else 0
        item.what = (f"{res['indices']} indices; rollover: {'yes' if res['rollover'] else 'no'}; delete "
                     f"{len(res['delete'])} ({res['delete_docs']} docs)")
        item.detail = {k: v for k, v in res.items() if k in ("delete", "rolled_over_to")}

    def _s3(self, ds: Dataset, item: Item) -> None:
        """The bucket spec's lifecycle (what `kredete s3 setup` applies) must say what the policy says."""
        bucket, _, prefix = ds.name.removeprefix("s3.").partition("/")
        spec = next((b for b in BUCKET_SPECS if b.name.removeprefix("kredete-") == bucket), None)
        if spec is None:
            raise InvalidData(f"{ds.name}: no bucket {bucket} in the spec", store="retention")
        if ds.action == "delete":
            rule = next((r for r in spec.lifecycle if r.prefix.rstrip("/") == prefix), None)
            if rule is None or rule.expire_days != ds.days:
                raise InvalidData(f"{ds.name}: the bucket lifecycle does not expire after {ds.days} days "
                                  f"({rule.describe() if rule else 'no rule for that prefix'}); fix one of them",
                                  store="retention")
            item.what = f"lifecycle {rule.describe()} (server-enforced, applied by kredete s3 setup)"
        else:
            if spec.object_lock and spec.retention_days != ds.days:
                raise InvalidData(f"{ds.name}: the bucket locks {spec.retention_days} days, the policy says "
                                  f"{ds.days}", store="retention")
            item.what = (f"object lock COMPLIANCE {spec.retention_days} days; "
                         + "; ".join(r.describe() for r in spec.lifecycle))

    async def _audit_logs(self, ds: Dataset, item: Item, now: datetime, apply: bool) -> None:
        repo = AuditArchiveRepository(self._need(self.postgres, "postgres"))
        parts = [p for p in await repo.partitions() if not p.dropped]
        assert ds.archive_after_days is not None and ds.archive_days is not None
        to_archive = [p for p in parts if not p.archived and _month_end(p.month) + timedelta(days=ds.archive_after_days)
                      <= now]
        to_drop = [p for p in parts if _month_end(p.month) + timedelta(days=ds.days) <= now]
        item.count = len(to_archive) + len(to_drop)
        item.what = (f"archive {len(to_archive)} partition(s) ({sum(p.rows for p in to_archive):,} rows), "
                     f"drop {len(to_drop)} ({sum(p.rows for p in to_drop):,} rows) older than {ds.days} days")
        item.detail = {"archive": [p.name for p in to_archive], "drop": [p.name for p in to_drop]}
        if not apply:
            return
        for p in to_archive + [p for p in to_drop if p.archived]:
            await self.archive_partition(repo, p, ds.archive_days)
            item.done += 1
        for p in to_drop:
            await repo.drop(p.name)
            item.done += 1
        if to_drop:
            report = await AuditRepository(self.postgres).verify_chain(archived=await repo.segments())
            if not report.ok:
                raise InvalidData(f"the audit chain does not verify after the drop: {report.reason} "
                                  f"(row {report.first_bad_id})", store="postgres")
            item.detail["chain"] = f"ok ({report.rows_checked} live rows)"

    async def archive_partition(self, repo: AuditArchiveRepository, p: Partition, days: int) -> dict[str, Any]:
        """Archive one partition (rows + manifest, locked), read it back and verify it, then record it."""
        archiver, auditor = self._need(self.archiver, "s3"), self._need(self.auditor, "s3")
        rows, segments = await repo.export(p.name)
        blob = encode_rows(rows)
        bucket = logs_bucket(self.settings.s3_bucket_prefix)
        manifest = {"kind": "kredete.audit-archive/v1", "partition": p.name, "month": p.month.isoformat(),
                    "rows": len(rows), "first_id": rows[0]["id"] if rows else None,
                    "last_id": rows[-1]["id"] if rows else None, "sha256": hashlib.sha256(blob).hexdigest(),
                    "segments": [s.as_dict() for s in segments], "archived_at": datetime.now(UTC).isoformat()}
        rows_key, manifest_key = archive_key(p.name, p.month, "ndjson.gz"), archive_key(p.name, p.month, "json")
        version = await put_record(archiver, bucket, rows_key, blob, content_type="application/gzip", days=days)
        await put_record(archiver, bucket, manifest_key, json.dumps(manifest, indent=1).encode(), days=days)
        # read back as another principal and verify before the partition may ever be dropped
        verify_archived_rows(await auditor.get(bucket, rows_key, version_id=version),
                             json.loads(await auditor.get(bucket, manifest_key)))
        await repo.record(p.name, p.month, rows, segments, object_key=rows_key, version_id=version,
                          sha256=manifest["sha256"], size=len(blob))
        return manifest


async def verify_archives(settings: Settings, postgres: PostgresStore, auditor: ObjectStore) -> dict[str, Any]:
    """Download every archived partition and verify it (file hash, row hashes, links, segments as recorded)."""
    repo = AuditArchiveRepository(postgres)
    bucket = logs_bucket(settings.s3_bucket_prefix)
    out = {"partitions": 0, "rows": 0}
    for a in await repo.archived():
        manifest = json.loads(await auditor.get(bucket, a["object_key"].removesuffix(".ndjson.gz") + ".json"))
        segments = verify_archived_rows(await auditor.get(bucket, a["object_key"], version_id=a["version_id"]),
                                        manifest)
        if [s.as_dict() for s in segments] != json.loads(a["segments"]) or manifest["sha256"] != a["sha256"]:
            raise InvalidData(f"audit archive {a['partition']}: the database's record differs from the archive",
                              store="postgres")
        out["partitions"] += 1
        out["rows"] += a["rows"]
    return out
