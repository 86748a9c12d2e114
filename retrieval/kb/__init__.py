"""Knowledge-base help articles shipped as package data (`articles/*.md` with a small front matter).

Articles are public: every principal may retrieve them, whatever their row scope.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources

from retrieval.documents import MalformedDocument, SourceDoc

_FIELDS = ("id", "title", "version")


def parse_article(name: str, raw: str) -> SourceDoc:
    """Parse `---\\nkey: value\\n---\\nbody`; raises MalformedDocument on a bad header."""
    if not raw.startswith("---\n"):
        raise MalformedDocument(name, "missing front matter")
    head, sep, body = raw[4:].partition("\n---\n")
    if not sep:
        raise MalformedDocument(name, "unterminated front matter")
    meta: dict[str, str] = {}
    for line in head.splitlines():
        key, colon, value = line.partition(":")
        if colon:
            meta[key.strip()] = value.strip()
    missing = [f for f in _FIELDS if not meta.get(f)]
    if missing or not body.strip():
        raise MalformedDocument(name, f"missing {', '.join(missing) or 'body'}")
    return SourceDoc(source_id=meta["id"], doc_type="kb", visibility="public", version=meta["version"],
                     title=meta["title"], text=body.strip(), updated_at=datetime(2025, 1, 1, tzinfo=UTC),
                     metadata={"tags": meta.get("tags", "")})


def load_articles() -> list[SourceDoc]:
    """Every bundled article, sorted by id."""
    folder = resources.files(__package__).joinpath("articles")
    docs = [parse_article(f.name, f.read_text(encoding="utf-8"))
            for f in folder.iterdir() if f.name.endswith(".md")]
    return sorted(docs, key=lambda d: d.source_id)
