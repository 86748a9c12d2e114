"""Source documents and chunks: the units ingestion reads and the search index stores."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DocType = Literal["kb", "credit_report", "dispute", "dispute_letter", "action_plan", "document"]
DOC_TYPES: tuple[str, ...] = ("kb", "credit_report", "dispute", "dispute_letter", "action_plan", "document")
Visibility = Literal["public", "private"]


class MalformedDocument(ValueError):
    """A source record that cannot be turned into a document; ingestion skips it and records `reason`."""

    def __init__(self, source_id: str, reason: str) -> None:
        super().__init__(f"{source_id}: {reason}")
        self.source_id = source_id
        self.reason = reason


class SourceDoc(BaseModel):
    """One document to index. Public documents (knowledge base) are visible to every principal;
    private ones only to principals whose row scope includes `user_id` (or covers all users)."""

    model_config = ConfigDict(frozen=True)

    source_id: str = Field(min_length=1, max_length=256)
    doc_type: DocType
    user_id: str | None = None
    visibility: Visibility = "private"
    version: str = Field("1", min_length=1, max_length=64)
    title: str = Field("", max_length=512)
    text: str
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    metadata: dict[str, str] = Field(default_factory=dict)
    #: Names known to belong to the subject, passed to the redactor (never indexed).
    known_names: tuple[str, ...] = ()
    #: source_id of an older version this document replaces (its chunks are deleted).
    supersedes: str | None = None

    @field_validator("source_id")
    @classmethod
    def _no_separator(cls, v: str) -> str:
        if "#" in v:
            raise ValueError("source_id must not contain '#'")
        return v

    @property
    def source_key(self) -> str:
        return f"{self.doc_type}:{self.source_id}"


class Chunk(BaseModel):
    """A token window of a (redacted) document. Offsets index the redacted document text."""

    model_config = ConfigDict(frozen=True)

    chunk_id: str
    source_id: str
    source_key: str
    doc_type: str
    user_id: str | None
    visibility: Visibility
    version: str
    title: str
    text: str
    chunk_index: int = Field(ge=0)
    n_chunks: int = Field(ge=1)
    char_start: int = Field(ge=0)
    char_end: int = Field(ge=0)
    token_start: int = Field(ge=0)
    token_end: int = Field(ge=0)
    updated_at: datetime
    metadata: dict[str, str] = Field(default_factory=dict)

    @property
    def citation(self) -> str:
        """Stable citation id, e.g. `kb:credit-basics#2` (the same as `chunk_id`)."""
        return self.chunk_id

    def embedding_text(self) -> str:
        """What the encoder sees: the title gives a short chunk its topic."""
        return f"{self.title}\n{self.text}" if self.title else self.text


def chunk_id(doc_type: str, source_id: str, index: int) -> str:
    return f"{doc_type}:{source_id}#{index}"
