"""Token-window chunking: sizes, overlap, offsets, metadata, multi-byte text, bad configs."""

from __future__ import annotations

import itertools

import pytest
from pydantic import ValidationError

from retrieval.chunking import Chunker, ChunkingConfig
from retrieval.documents import SourceDoc
from retrieval.kb import load_articles, parse_article
from retrieval.token_count import count_tokens, get_encoding

TEXT = " ".join(f"Sentence number {i} talks about transfers to Lagos and credit scores." for i in range(60))


def doc(text: str = TEXT, **kw) -> SourceDoc:
    return SourceDoc(source_id=kw.pop("source_id", "d1"), doc_type=kw.pop("doc_type", "dispute"), text=text,
                     user_id=kw.pop("user_id", "7b0e6b2e-52a6-4c0e-9d5e-0a6c7a3f2b11"), version="3", title="T", **kw)


def test_offline_encoding_loads():
    assert get_encoding().encode("hello world") == [15339, 1917]  # cl100k_base ids


@pytest.mark.parametrize(("size", "overlap"), [(16, 0), (32, 8), (64, 32), (128, 32)])
def test_windows_have_size_and_overlap(size: int, overlap: int):
    chunks = Chunker(ChunkingConfig(size=size, overlap=overlap)).split(doc())
    total = count_tokens(TEXT)
    assert chunks[0].token_start == 0 and chunks[-1].token_end == total
    for a, b in itertools.pairwise(chunks):
        assert a.token_end - a.token_start == size
        assert b.token_start == a.token_start + size - overlap
    assert all(c.token_end - c.token_start <= size for c in chunks)


def test_offsets_slice_the_source_and_metadata_is_kept():
    d = doc()
    chunks = Chunker(ChunkingConfig(size=40, overlap=10)).split(d)
    assert len(chunks) > 3
    for i, c in enumerate(chunks):
        assert c.text == d.text[c.char_start:c.char_end]
        assert (c.source_id, c.user_id, c.doc_type, c.version, c.chunk_index, c.n_chunks) == (
            "d1", d.user_id, "dispute", "3", i, len(chunks))
        assert c.chunk_id == c.citation == f"dispute:d1#{i}"
        assert c.source_key == "dispute:d1"


def test_no_overlap_covers_text_exactly_once():
    d = doc()
    chunks = Chunker(ChunkingConfig(size=32, overlap=0)).split(d)
    assert "".join(c.text for c in chunks) == d.text


def test_multibyte_text_never_splits_a_character():
    text = "Naïve café — ₦5,000 sent to Kumasi 😀🇬🇭 " * 40
    chunks = Chunker(ChunkingConfig(size=9, overlap=3)).split(doc(text))
    for c in chunks:
        assert c.text == text[c.char_start:c.char_end]
        c.text.encode("utf-8")  # valid unicode
    assert "".join(c.text for c in Chunker(ChunkingConfig(size=9, overlap=0)).split(doc(text))) == text


def test_short_and_empty_texts():
    assert len(Chunker().split(doc("tiny"))) == 1
    assert Chunker().split(doc("")) == []


@pytest.mark.parametrize("kw", [{"size": 10, "overlap": 10}, {"size": 4}, {"size": 10, "overlap": -1}])
def test_bad_config_is_refused(kw):
    with pytest.raises(ValidationError):
        ChunkingConfig(**kw)


def test_source_id_may_not_contain_separator():
    with pytest.raises(ValidationError):
        doc(source_id="a#b")


def test_kb_articles_parse_and_chunk():
    articles = load_articles()
    assert len(articles) >= 12
    assert all(a.visibility == "public" and a.user_id is None and a.doc_type == "kb" for a in articles)
    chunks = [c for a in articles for c in Chunker().split(a)]
    assert {c.citation for c in chunks} >= {"kb:credit-basics#0", "kb:credit-basics#1"}


@pytest.mark.parametrize("raw", ["no header", "---\nid: x\n---\nbody", "---\nid: x\ntitle: t\nversion: 1\n"])
def test_malformed_article(raw):
    from retrieval.documents import MalformedDocument

    with pytest.raises(MalformedDocument):
        parse_article("bad.md", raw)


def test_chunking_and_knn_settings_come_from_the_environment(monkeypatch):
    from config.settings import Settings

    monkeypatch.setenv("KREDETE_CHUNK_TOKENS", "48")
    monkeypatch.setenv("KREDETE_CHUNK_OVERLAP", "12")
    monkeypatch.setenv("KREDETE_KNN_SPACE", "l2")
    s = Settings()
    assert (s.chunk_tokens, s.chunk_overlap, s.knn_space, s.knn_engine) == (48, 12, "l2", "lucene")
    chunks = Chunker(ChunkingConfig(size=s.chunk_tokens, overlap=s.chunk_overlap)).split(doc())
    assert max(c.token_end - c.token_start for c in chunks) == 48
    assert all(b.token_start == a.token_end - 12 for a, b in itertools.pairwise(chunks))
    monkeypatch.setenv("KREDETE_KNN_SPACE", "hamming")
    with pytest.raises(ValidationError):
        Settings()


def test_a_chunking_change_changes_the_content_hash():
    """Otherwise re-ingesting with another chunk size would keep the old chunks as 'unchanged'."""
    from retrieval.ingest import content_sha

    d = doc()
    assert content_sha(d, d.text) == content_sha(d, d.text, "")
    assert content_sha(d, d.text, "64/16/cl100k_base") != content_sha(d, d.text)
