"""Ingestion sources: each yields records in ascending key order, so a run can resume after a key.

Credit-store sources scan the Mongo collections (`credit_reports`, `dispute_cases`, `action_plans`) by
`_id` through `stores.mongo.scans` (the repositories are per-user, scoped APIs); documents are validated
with the same pydantic models the repositories use. S3 documents are listed and read through the
ObjectStore's read API (which falls over to the DR region).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol
from uuid import UUID

from retrieval.converters import action_plan_doc, credit_report_doc, dispute_docs
from retrieval.documents import MalformedDocument, SourceDoc
from retrieval.kb import parse_article
from stores.errors import InvalidData, NotFound
from stores.keys import KeyDestroyed
from stores.mongo.scans import CreditStoreScan


@dataclass
class Record:
    """One source record: the documents it yields, or why it was skipped."""

    key: str
    docs: list[SourceDoc] = field(default_factory=list)
    error: MalformedDocument | None = None


class Source(Protocol):
    name: str

    def records(self, after: str | None = None) -> AsyncIterator[Record]:
        """Records with key > `after`, ascending by key."""
        ...


class KbSource:
    """Help articles shipped in `retrieval/kb/articles`."""

    name = "kb"

    async def records(self, after: str | None = None) -> AsyncIterator[Record]:
        folder = resources.files("retrieval.kb").joinpath("articles")
        for f in sorted((f for f in folder.iterdir() if f.name.endswith(".md")), key=lambda f: f.name):
            if after is not None and f.name <= after:
                continue
            try:
                yield Record(f.name, [parse_article(f.name, f.read_text(encoding="utf-8"))])
            except MalformedDocument as exc:
                yield Record(f.name, error=exc)


class ListSource:
    """In-memory records (tests, ad-hoc loads)."""

    def __init__(self, name: str, records: list[Record]) -> None:
        self.name = name
        self._records = sorted(records, key=lambda r: r.key)

    async def records(self, after: str | None = None) -> AsyncIterator[Record]:
        for r in self._records:
            if after is None or r.key > after:
                yield r


class MongoSource:
    """A full scan of one credit-store collection by `_id`, skipping superseded versions."""

    def __init__(self, db: Any, collection: str, name: str, *, batch: int = 200) -> None:
        self.scan = CreditStoreScan(db)
        self.collection = collection
        self.name = name
        self.batch = batch

    def convert(self, raw: dict[str, Any]) -> list[SourceDoc]:
        raise NotImplementedError

    async def prepare(self) -> None:
        """Hook run once before the scan."""

    async def records(self, after: str | None = None) -> AsyncIterator[Record]:
        await self.prepare()
        async for rows in self.scan.pages(self.collection, after=after, batch=self.batch):
            for raw in rows:
                key = str(raw["_id"])
                if self.skip(raw):
                    continue
                try:
                    yield Record(key, self.convert(raw))
                except MalformedDocument as exc:
                    yield Record(key, error=exc)
                except Exception as exc:  # a converter bug on one document must not stop the run
                    yield Record(key, error=MalformedDocument(key, f"unreadable: {type(exc).__name__}: {exc}"[:300]))

    def skip(self, raw: dict[str, Any]) -> bool:
        return False


class _Versioned(MongoSource):
    """Only the newest version of each versioned document is indexed."""

    superseded: set[str]

    async def prepare(self) -> None:
        self.superseded = await self.scan.superseded(self.collection)

    def skip(self, raw: dict[str, Any]) -> bool:
        return str(raw["_id"]) in self.superseded


class CreditReportSource(_Versioned):
    def __init__(self, db: Any, **kw: Any) -> None:
        super().__init__(db, "credit_reports", "credit", **kw)

    def convert(self, raw: dict[str, Any]) -> list[SourceDoc]:
        return [credit_report_doc(raw)]


class ActionPlanSource(_Versioned):
    def __init__(self, db: Any, **kw: Any) -> None:
        super().__init__(db, "action_plans", "plans", **kw)

    def convert(self, raw: dict[str, Any]) -> list[SourceDoc]:
        return [action_plan_doc(raw)]


class DisputeSource(MongoSource):
    """Dispute cases and their letters; the report subject's name is a known name for redaction."""

    def __init__(self, db: Any, **kw: Any) -> None:
        super().__init__(db, "dispute_cases", "disputes", **kw)
        self._names: dict[str, tuple[str, ...]] = {}

    async def names_for(self, report_ids: set[str]) -> None:
        missing = [r for r in report_ids if r not in self._names]
        if missing:
            self._names.update(await self.scan.report_subject_names(missing))

    def convert(self, raw: dict[str, Any]) -> list[SourceDoc]:
        return dispute_docs(raw, self._names.get(str(raw.get("report_id")), ()))

    async def prepare(self) -> None:
        await self.names_for(await self.scan.distinct_values(self.collection, "report_id"))


_TEXT_SUFFIXES = (".txt", ".md", ".json", ".csv", ".html", ".xml")
_USER_KEY = re.compile(r"(?:^|/)users?/([0-9a-fA-F-]{36})/")
MAX_OBJECT_BYTES = 2_000_000
PAGE_KEYS = 200


class S3Source:
    """Text objects of a bucket (by content type or suffix); binaries are skipped and recorded."""

    name = "s3"

    def __init__(self, objects: Any, bucket: str = "kredete-documents", prefix: str = "", *,
                 owner_names: Callable[[str], Awaitable[Sequence[str]]] | None = None,
                 unseal: Callable[[str, bytes, dict[str, str]], bytes] | None = None) -> None:
        self.objects = objects
        self.bucket = bucket
        self.prefix = prefix
        #: Names of a document's owner (from the users table), masked as known names by the redactor.
        self.owner_names = owner_names
        #: Opens a body sealed under its owner's data key (`stores.objects.sealed`): (key, body, metadata).
        self.unseal = unseal

    async def records(self, after: str | None = None) -> AsyncIterator[Record]:
        last = after or ""
        while True:
            try:
                keys = await self.objects.list_keys(self.bucket, self.prefix, start_after=last, limit=PAGE_KEYS)
            except NotFound:
                return  # no bucket yet: nothing to ingest
            for key in keys:
                record = await self._record(key)
                if record is not None:
                    yield record
            if len(keys) < PAGE_KEYS:
                return
            last = keys[-1]

    async def _record(self, key: str) -> Record | None:
        sid = key.replace("#", "%23")
        head = await self.objects.head(self.bucket, key)
        size = int(head.get("ContentLength") or 0)
        if size > MAX_OBJECT_BYTES:
            return Record(key, error=MalformedDocument(sid, f"too large ({size} bytes)"))
        meta = head.get("Metadata") or {}
        # a sealed document (dsr area): its plaintext's type is in the metadata; the body opens with the owner's key
        ctype = (meta.get("plain-type") or head.get("ContentType") or "").split(";")[0]
        if not (ctype.startswith("text/") or ctype == "application/json" or key.lower().endswith(_TEXT_SUFFIXES)):
            return Record(key, error=MalformedDocument(sid, f"not text ({ctype or 'unknown type'})"))
        body = await self.objects.get(self.bucket, key, version_id=head.get("VersionId"))
        if meta.get("sealed"):
            if self.unseal is None:
                return Record(key, error=MalformedDocument(sid, "sealed under its owner's key; no key store"))
            try:
                body = self.unseal(key, body, meta)
            except KeyDestroyed:
                return None  # an erased owner's document: unreadable by design, and not even a skip record
            except InvalidData:
                return Record(key, error=MalformedDocument(sid, "sealed; no key for its owner here"))
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return Record(key, error=MalformedDocument(sid, "not valid UTF-8 text"))
        user_id = _user_of(meta.get("user-id") or meta.get("user_id"), key)
        title = meta.get("title") or key.rsplit("/", 1)[-1]
        version = (head.get("VersionId") or head.get("ETag") or "1").strip('"')[:64] or "1"
        names: tuple[str, ...] = ()
        if user_id and self.owner_names is not None:
            names = tuple(await self.owner_names(user_id))
        try:
            doc = SourceDoc(source_id=sid, doc_type="document", user_id=user_id,
                            visibility="private", version=version, title=title[:512], text=text,
                            updated_at=head["LastModified"], metadata={"bucket": self.bucket, "key": key[:256]},
                            known_names=names)
        except ValueError as exc:
            return Record(key, error=MalformedDocument(sid, f"invalid: {str(exc)[:200]}"))
        return Record(key, [doc])


def _user_of(meta_value: str | None, key: str) -> str | None:
    for candidate in (meta_value, (m.group(1) if (m := _USER_KEY.search(key)) else None)):
        if candidate:
            try:
                return str(UUID(candidate))
            except ValueError:
                continue
    return None

