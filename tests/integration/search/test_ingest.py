"""Ingestion: malformed records skipped and recorded, resumable runs, redaction, stale chunks, embedding
metadata in Mongo. (Change events end to end: test_follow.py, on the real credit store.)"""

from __future__ import annotations

import uuid

import pytest

from guards.redaction import redact
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
    ingestor = Ingestor(search_store, encoder, redact=redact)
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
    ingestor = Ingestor(search_store, encoder, redact=redact, batch_docs=3)
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
    await Ingestor(search_store, encoder, redact=redact).index_docs([doc])
    stored = (await chunks_of(search_store, "pii-1"))[0]["text"]
    for raw in ("08031234567", "4111 1111 1111 1111", "ada.obi@example.com", "22123456789", "Ada Obi"):
        assert raw not in stored
    assert "[EMAIL]" in stored


async def test_changed_document_replaces_its_chunks_and_superseded_versions_go(search_store, encoder):
    user = str(uuid.uuid4())
    ingestor = Ingestor(search_store, encoder, redact=redact, chunker=Chunker(ChunkingConfig(size=16, overlap=4)))
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


async def test_a_document_twice_in_one_run_keeps_only_the_later_chunks(search_store, encoder):
    """Batches overlap (the third is looked up before the first is written): a document the first batch holds
    and the third shortens must not keep the first one's extra chunks, nor a re-run of the shorter one."""
    user = str(uuid.uuid4())
    name = f"twice-{uuid.uuid4().hex[:6]}"
    long_text = " ".join(f"Paragraph {i} on building credit with rent reporting." for i in range(12))

    def plan(key: str, text: str) -> Record:
        return Record(key, [SourceDoc(source_id="plan-twice", doc_type="action_plan", user_id=user, text=text)])

    ingestor = Ingestor(search_store, encoder, redact=redact, batch_docs=1,
                        chunker=Chunker(ChunkingConfig(size=16, overlap=4)))
    first = await ingestor.run(ListSource(name, [plan("a", long_text)]))
    assert first.chunks_indexed > 3
    await ingestor.delete_sources(["action_plan:plan-twice"])
    recs = [plan("a", long_text), note(201, user), plan("c", "Pay the card below 30 percent.")]
    report = await ingestor.run(ListSource(name, recs), resume=False)
    assert report.docs_indexed == 3
    assert [c["text"] for c in await chunks_of(search_store, "plan-twice")] == ["Pay the card below 30 percent."]


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


async def _chunk_ids(store) -> set[str]:
    alias = store.index_name(CHUNKS)
    await store.os.indices.refresh(index=alias)
    res = await store.os.search(index=alias, body={"size": 10_000, "_source": False})
    return {h["_id"] for h in res["hits"]["hits"]}


async def test_embedding_metadata_is_recorded_in_mongo_for_every_chunk(own_search, credit_db, encoder):
    from retrieval.sources import KbSource
    from stores.mongo.documents import GLOBAL_USER_ID
    from stores.mongo.embeddings import EmbeddingRepository

    records = EmbeddingRepository(credit_db)
    ingestor = Ingestor(own_search, encoder, redact=redact, chunker=Chunker(ChunkingConfig(size=32, overlap=8)),
                        embeddings=records)
    alias = own_search.index_name(CHUNKS)
    kb = await ingestor.run(KbSource(), resume=False)
    user = str(uuid.uuid4())
    long_text = " ".join(f"Step {i}: pay the card before the statement date." for i in range(30))
    plan = SourceDoc(source_id="emb-plan-1", doc_type="action_plan", user_id=user, version="1", text=long_text)
    case = SourceDoc(source_id="emb-dis-1", doc_type="dispute", user_id=user, version="4", text="Dispute of a balance.")
    letter = SourceDoc(source_id="emb-dis-1.L1", doc_type="dispute_letter", user_id=user, text="Dear bureau, ...")
    more = await ingestor.index_docs([plan, case, letter])

    ids = await _chunk_ids(own_search)
    assert len(ids) == kb.chunks_indexed + more.chunks_indexed
    assert await records.count(index_name=alias) == len(ids)
    assert {r.vector_id for r in await records.for_source("action_plan", "emb-plan-1")} <= ids
    plan_records = await records.for_source("action_plan", "emb-plan-1")
    assert len(plan_records) == more.chunks_indexed - 2 and len(plan_records) > 3
    r0 = plan_records[0]
    assert (r0.model, r0.dim, r0.user_id, r0.source_version, r0.index_name) == (encoder.name, 384, user, "1", alias)
    assert r0.vector_id == "action_plan:emb-plan-1#0" and r0.token_count == 32
    kb_records = [r for r in await records.for_source("kb", sorted(i for i in ids if i.startswith("kb:"))[0]
                                                      .split(":", 1)[1].split("#")[0])]
    assert kb_records and all(r.user_id == GLOBAL_USER_ID for r in kb_records)

    # re-indexed shorter, superseded, deleted: the records follow the chunks
    await ingestor.index_docs([plan.model_copy(update={"text": "Pay the card early.", "version": "1b"})])
    v2 = SourceDoc(source_id="emb-plan-2", doc_type="action_plan", user_id=user, version="2", text="Set up autopay.",
                   supersedes="emb-plan-1")
    await ingestor.index_docs([v2])
    assert await records.for_source("action_plan", "emb-plan-1") == []
    await ingestor.delete_sources(["dispute:emb-dis-1"], letter_prefixes=["emb-dis-1"])
    ids = await _chunk_ids(own_search)
    assert not any(i.startswith(("dispute:emb-dis-1", "dispute_letter:emb-dis-1")) for i in ids)
    assert await records.count(index_name=alias) == len(ids)
    assert await records.count(source_type="dispute_letter") == 0
    await ingestor.reset()
    assert await _chunk_ids(own_search) == set() and await records.count(index_name=alias) == 0
