"""The PII redaction every ingestion path applies before anything is chunked, embedded or indexed.

Retrieval sits below guards, so it never imports the redaction engine: the caller (the CLI, the MCP
server, a test) passes it in, normally `guards.redaction.redact`, and every indexer requires one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Redacted(Protocol):
    text: str


class RedactionEngine(Protocol):
    """What ingestion calls: `guards.redaction.redact`'s shape (text, names known to belong to its subject)."""

    def __call__(self, text: str, /, *, known_names: list[str] | None = None) -> Redacted: ...


class Redactor(Protocol):
    """Returns `text` with PII masked; `known_names` are names known to belong to the subject."""

    def __call__(self, text: str, known_names: Sequence[str] = ()) -> str: ...


def text_redactor(engine: RedactionEngine) -> Redactor:
    """The engine as a text -> text function."""

    def redact(text: str, known_names: Sequence[str] = ()) -> str:
        return engine(text, known_names=list(known_names) or None).text

    return redact
