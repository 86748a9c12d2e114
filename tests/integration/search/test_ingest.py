"""Ingestion: malformed records skipped and recorded, resumable runs, redaction, stale chunks, events."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest

from retrieval.chunking import Chunker, ChunkingConfig
from retrieval.documents import MalformedDocument, SourceDoc
from retrieval.ingest import Ingestor
from retrieval.sources import ListSource, Record
from stores.search.catalog import CHUNKS


def note(i: int, user: str, text: str | None = None, version: str = "1") -> Record:
    sid = f"ing-{i:03d}"
    return Record(sid, [SourceDoc(source_id=sid, doc_type="document", user_id=user, version=version,
                                  title=f"Note {i}", text=text or f"Note {i} about a transfer to Nairobi")])


async def chunks_of(store, source_id: str) -> list[dict]:
    alias = store.index_name(CHUNKS)
    await store.os.indices.refresh(index=alias)
    res = await store.os.search(index=alias, body={"size": 100, "query": {"term": {"source_id": source_id}},
                                                   "_source": {"excludes": ["embedding"]}})
    return sorted((h["_source"] for h in res["hits"]["hits"]), key=lambda s: s["chunk_index"])


async def test_malformed_records_are_skipped_recorded_and_the_run_continues(search_store, encoder):
    user = str(uuid.uuid4())
    name = f"bad-{uuid.uuid4().hex[:6]}"
    records = [note(1, user), Record("ing-002", error=MalformedDocument("ing-002", "failed validation: user_id")),
               note(3, user, text="   "), note(4, user, text="x" * 1_000_001), note(5, user)]
    ingestor = Ingestor(search_store, encoder)
    report = await ingestor.run(ListSource(name, records))
    assert report.records == 5 and report.docs_indexed == 2 and report.docs_skipped == 3
    reasons = {s.source_id: s.reason for s in await ingestor.skip_records(name)}
    assert reasons == {"ing-002": "failed validation: user_id", "ing-003": "empty text",
                       "ing-004": "text too large (1000001 characters)"}


async def test_converter_rejects_malformed_credit_documents():
    from retrieval.converters import action_plan_doc, credit_report_doc, dispute_docs

    with pytest.raises(MalformedDocument, match="failed validation"):
        credit_report_doc({"_id": "r1", "user_id": "not-a-uuid"})
    with pytest.raises(MalformedDocument):
        dispute_docs({"_id": "d1", "reason": "bogus"})
    with pytest.raises(MalformedDocument):
        action_plan_doc({})


class Crashing(ListSource):
    """Fails after yielding `crash_after` records, like a process killed mid-run."""

    def __init__(self, name, records, crash_after):
        super().__init__(name, records)
        self.crash_after = crash_after

    async def records(self, after=None):
        n = 0
        async for r in super().records(after):
            if n == self.crash_after:
                raise RuntimeError("killed")
            n += 1
            yield r


async def test_resume_after_a_crash_continues_from_the_checkpoint(search_store, encoder):
    user = str(uuid.uuid4())
    name = f"resume-{uuid.uuid4().hex[:6]}"
    records = [note(i, user) for i in range(100, 110)]
    ingestor = Ingestor(search_store, encoder, batch_docs=3)
    with pytest.raises(RuntimeError):
        await ingestor.run(Crashing(name, records, crash_after=7))
    ckpt = await ingestor.checkpoint(name)
    assert ckpt["last_key"] == "ing-105" and ckpt["done"] is False  # two full batches of 3
    report = await ingestor.run(ListSource(name, records))
    assert report.resumed_after == "ing-105" and report.records == 4 and report.docs_indexed == 4
    assert (await ingestor.checkpoint(name))["done"] is True
    for r in records:
        assert await chunks_of(search_store, r.key)
    again = await ingestor.run(ListSource(name, records))  # a finished run starts over, cheaply
    assert again.resumed_after is None and again.docs_unchanged == 10 and again.chunks_indexed == 0


async def test_pii_is_redacted_in_stored_chunks(search_store, encoder):
    user = str(uuid.uuid4())
    text = ("Ada Obi called from 08031234567 about card 4111 1111 1111 1111; "
            "her email is ada.obi@example.com and BVN 22123456789.")
    doc = SourceDoc(source_id="pii-1", doc_type="dispute", user_id=user, text=text, known_names=("Ada Obi",))
    await Ingestor(search_store, encoder).index_docs([doc])
    stored = (await chunks_of(search_store, "pii-1"))[0]["text"]
    for raw in ("08031234567", "4111 1111 1111 1111", "ada.obi@example.com", "22123456789", "Ada Obi"):
        assert raw not in stored
    assert "[EMAIL]" in stored


async def test_changed_document_replaces_its_chunks_and_superseded_versions_go(search_store, encoder):
    user = str(uuid.uuid4())
    ingestor = Ingestor(search_store, encoder, chunker=Chunker(ChunkingConfig(size=16, overlap=4)))
    long_text = " ".join(f"Paragraph {i} on building credit with rent reporting." for i in range(12))
    v1 = SourceDoc(source_id="plan-v1", doc_type="action_plan", user_id=user, version="1", text=long_text)
    await ingestor.index_docs([v1])
    assert len(await chunks_of(search_store, "plan-v1")) > 3
    shorter = v1.model_copy(update={"text": "Pay the card below 30 percent.", "version": "1b"})
    await ingestor.index_docs([shorter])
    assert [c["text"] for c in await chunks_of(search_store, "plan-v1")] == ["Pay the card below 30 percent."]
    v2 = SourceDoc(source_id="plan-v2", doc_type="action_plan", user_id=user, version="2",
                   text="Set up autopay.", supersedes="plan-v1")
    await ingestor.index_docs([v2])
    assert await chunks_of(search_store, "plan-v1") == []
    assert len(await chunks_of(search_store, "plan-v2")) == 1


class FakeColl:
    def __init__(self, rows):
        self.rows = {r["_id"]: r for r in rows}

    def find(self, flt, projection=None):
        ids = flt["_id"]["$in"]

        async def gen():
            for i in ids:
                if i in self.rows:
                    yield self.rows[i]
        return gen()

    async def distinct(self, field):
        return []


async def test_incremental_from_change_events(search_store, encoder):
    """Upserts re-read and index the document; deletes (or vanished documents) remove its chunks."""
    from retrieval.changes import apply_events

    user = str(uuid.uuid4())
    plan = {"_id": f"ap-{uuid.uuid4().hex[:6]}", "user_id": user, "version": 1, "horizon_months": 6,
            "summary": "Lower utilisation and add rent reporting.",
            "steps": [{"title": "Pay card below 30%", "factor": "utilization"}]}
    db = {"action_plans": FakeColl([plan]), "credit_reports": FakeColl([]), "dispute_cases": FakeColl([])}
    ingestor = Ingestor(search_store, encoder)
    ev = SimpleNamespace(topic="action_plans", op="insert", document_id=plan["_id"])
    report = await apply_events(ingestor, db, [ev, ev])  # at-least-once delivery: duplicates are fine
    assert report.docs_indexed == 1
    assert "rent reporting" in (await chunks_of(search_store, plan["_id"]))[0]["text"]
    db["action_plans"] = FakeColl([])
    gone = SimpleNamespace(topic="action_plans", op="delete", document_id=plan["_id"])
    report = await apply_events(ingestor, db, [gone])
    assert report.docs_deleted == 1 and await chunks_of(search_store, plan["_id"]) == []


def test_converters_render_credit_documents_without_identity():
    from retrieval.converters import credit_report_doc, dispute_docs

    user = str(uuid.uuid4())
    report = {"_id": "rep-1", "user_id": user, "bureau": "experian", "country": "US", "version": 2,
              "supersedes": "rep-0", "pulled_at": "2025-02-01T00:00:00Z", "score": 640,
              "subject": {"full_name": "Ada Obi", "ssn": "enc1.xxx", "address": "1 Main St"},
              "accounts": [{"creditor": "Capital Bank", "account_type": "credit_card", "account_number": "enc1.y",
                            "account_number_last4": "1234", "status": "delinquent", "opened_on": "2021-01-01",
                            "currency": "USD", "balance_minor": 90_000, "credit_limit_minor": 100_000,
                            "payment_history": ["OK", "30", "60"]}],
              "items": [{"kind": "late_payment", "description": "30 days late in March", "reported_on": "2024-03-01"}]}
    doc = credit_report_doc(report)
    assert (doc.doc_type, doc.user_id, doc.version, doc.supersedes) == ("credit_report", user, "2", "rep-0")
    assert "utilisation 90%" in doc.text and "1x 30, 1x 60" in doc.text and "ending 1234" in doc.text
    assert "Ada Obi" not in doc.text and "1 Main St" not in doc.text and doc.known_names == ("Ada Obi",)
    dispute = {"_id": "dis-1", "user_id": user, "report_id": "rep-1", "bureau": "experian", "reason": "not_mine",
               "letters": [{"letter_id": "L1", "sent_at": "2025-02-02T00:00:00Z", "body": "Dear Experian, ..."}]}
    case, letter = dispute_docs(dispute, ("Ada Obi",))
    assert case.doc_type == "dispute" and "reason not mine" in case.text
    assert letter.doc_type == "dispute_letter" and letter.source_id == "dis-1.L1" and letter.known_names
