"""Incremental re-embedding against the real OpenSearch: a second ingest embeds nothing, a changed record
re-embeds only its changed chunks, and vectors of two encoders are never mixed in one index."""

from __future__ import annotations

import re
import uuid

import numpy as np
import pytest

from guards.redaction import redact
from retrieval.chunking import Chunker, ChunkingConfig
from retrieval.documents import SourceDoc
from retrieval.encoder import HashingEncoder
from retrieval.ingest import Ingestor
from retrieval.sources import ListSource, Record
from stores.errors import InvalidData
from stores.scope import RowScope
from stores.search.catalog import CHUNKS

SENTENCES = [f"Clause {i}: the lender reviews disputed item number {i} within {i + 20} days of the request."
             for i in range(14)]


class Counting:
    """The real encoder, recording every text it is asked to embed."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.seen: list[str] = []

    async def embed_documents(self, texts):
        self.seen.extend(texts)
        return await self.inner.embed_documents(texts)

    async def embed_query(self, text):
        return await self.inner.embed_query(text)


def records(user: str, long_text: str, short: dict[int, str]) -> list[Record]:
    out = [Record("inc-0", [SourceDoc(source_id="inc-0", doc_type="document", user_id=user, title="Terms",
                                      text=long_text)])]
    for i, text in short.items():
        out.append(Record(f"inc-{i}", [SourceDoc(source_id=f"inc-{i}", doc_type="document", user_id=user,
                                                 title=f"Note {i}", text=text)]))
    return out


async def stored(store, source_id: str) -> dict[int, dict]:
    alias = store.index_name(CHUNKS)
    await store.os.indices.refresh(index=alias)
    res = await store.os.search(index=alias, body={"size": 100, "query": {"term": {"source_id": source_id}}})
    return {h["_source"]["chunk_index"]: h["_source"] for h in res["hits"]["hits"]}


async def test_a_second_ingest_embeds_nothing_and_a_change_re_embeds_only_its_chunks(own_search, encoder):
    user = str(uuid.uuid4())
    counting = Counting(encoder)
    ingestor = Ingestor(own_search, counting, redact=redact, chunker=Chunker(ChunkingConfig(size=32, overlap=0)))
    long_text = " ".join(SENTENCES)
    short = {i: f"Note {i}: the transfer of {i * 1000} naira arrived." for i in range(1, 5)}
    name = f"inc-{uuid.uuid4().hex[:6]}"

    first = await ingestor.run(ListSource(name, records(user, long_text, short)), resume=False)
    n_long = len(await stored(own_search, "inc-0"))
    assert n_long >= 4 and first.docs_indexed == 5
    assert first.chunks_embedded == first.chunks_indexed == len(counting.seen) == n_long + 4

    counting.seen.clear()
    again = await ingestor.run(ListSource(name, records(user, long_text, short)), resume=False)
    assert counting.seen == [] and again.chunks_embedded == 0 and again.chunks_indexed == 0
    assert again.docs_unchanged == 5 and again.chunks_unchanged == n_long + 4

    # one short record changed: its one chunk is embedded, nothing else
    counting.seen.clear()
    changed = {**short, 3: "Note 3: the transfer of 3000 naira was reversed by the bank."}
    third = await ingestor.run(ListSource(name, records(user, long_text, changed)), resume=False)
    assert len(counting.seen) == 1 and "reversed by the bank" in counting.seen[0]
    assert third.docs_indexed == 1 and third.docs_unchanged == 4
    assert (await stored(own_search, "inc-3"))[0]["text"].endswith("reversed by the bank.")

    # the long record's last clause changed: only its last chunk is embedded again; the others keep their vectors
    before = await stored(own_search, "inc-0")
    counting.seen.clear()
    edited = long_text.replace("number 13 within 33 days", "number 13 within 45 days")
    fourth = await ingestor.run(ListSource(name, records(user, edited, changed)), resume=False)
    after = await stored(own_search, "inc-0")
    assert fourth.docs_indexed == 1 and 1 <= fourth.chunks_embedded < n_long == len(after)
    assert len(counting.seen) == fourth.chunks_embedded and all("45 days" in t for t in counting.seen)
    for i, chunk in after.items():
        if "45 days" in chunk["text"]:
            want = (await encoder.embed_documents([f"{chunk['title']}\n{chunk['text']}"]))[0]
            assert float(np.dot(want, chunk["embedding"])) > 0.999
        else:
            assert chunk["embedding"] == before[i]["embedding"] and chunk["text"] == before[i]["text"]


async def test_vectors_of_another_encoder_are_refused_not_mixed(own_search, encoder):
    from retrieval.service import KnowledgeRetriever

    user = str(uuid.uuid4())
    await Ingestor(own_search, encoder, redact=redact).run(
        ListSource(f"mix-{uuid.uuid4().hex[:6]}", records(user, "Fees are charged monthly.", {})), resume=False)
    other = HashingEncoder(dim=encoder.dim, name="another-encoder")
    with pytest.raises(InvalidData, match="kredete ingest --reset"):
        await Ingestor(own_search, other, redact=redact).ensure_indexes()
    with pytest.raises(InvalidData, match=f"holds vectors of {re.escape(encoder.name)};.*KREDETE_ENCODER"):
        await KnowledgeRetriever(own_search, other).search("fees", RowScope.none(), mode="knn")


async def test_stale_vectors_name_the_other_encoder_and_a_reset_re_embeds_with_this_one(own_search, encoder):
    """What `kredete ingest --reembed-stale` (scripts/serve.sh) decides on: an index of another encoder's
    vectors is named, then rebuilt whole with this encoder's; an index of this encoder's is left alone."""
    user = str(uuid.uuid4())
    source = ListSource(f"stale-{uuid.uuid4().hex[:6]}", records(user, "Fees are charged monthly.", {}))
    await Ingestor(own_search, encoder, redact=redact).run(source, resume=False)
    assert await Ingestor(own_search, encoder, redact=redact).stale_vectors() is None
    other = Counting(HashingEncoder(dim=encoder.dim, name="another-encoder"))
    ingestor = Ingestor(own_search, other, redact=redact)
    assert await ingestor.stale_vectors() == encoder.name
    await ingestor.reset()
    await ingestor.run(source, resume=False)
    assert other.seen and await ingestor.stale_vectors() is None
    assert await Ingestor(own_search, encoder, redact=redact).stale_vectors() == "another-encoder"


class FailingOn(Counting):
    """Raises on the batch holding `marker`, like a model that runs out of memory mid-run."""

    def __init__(self, inner, marker: str) -> None:
        super().__init__(inner)
        self.marker = marker

    async def embed_documents(self, texts):
        if any(self.marker in t for t in texts):
            raise MemoryError("encoder failed")
        return await super().embed_documents(texts)


async def test_a_failing_batch_stops_the_run_at_the_last_finished_batch_and_resume_completes_it(own_search,
                                                                                                 encoder):
    """Batches overlap (one embeds while the previous is written); the checkpoint only follows finished ones."""
    user = str(uuid.uuid4())
    name = f"fail-{uuid.uuid4().hex[:6]}"
    short = {i: f"Note {i}: a payment of {i} cedis." for i in range(1, 10)}
    recs = records(user, "Fees are charged monthly.", short)
    failing = FailingOn(encoder, "payment of 4 cedis")  # the second batch: inc-3, inc-4, inc-5
    with pytest.raises(MemoryError):
        await Ingestor(own_search, failing, redact=redact, batch_docs=3).run(ListSource(name, recs))
    ingestor = Ingestor(own_search, encoder, redact=redact, batch_docs=3)
    ckpt = await ingestor.checkpoint(name)
    assert ckpt["last_key"] == "inc-2" and ckpt["done"] is False  # the first batch: inc-0, inc-1, inc-2
    report = await ingestor.run(ListSource(name, recs))
    assert report.resumed_after == "inc-2" and report.records == 7
    assert (await ingestor.checkpoint(name))["done"] is True
    for r in recs:
        assert await stored(own_search, r.key), r.key
