"""Token-window chunking with tiktoken: fixed size, configurable overlap, character offsets kept."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from retrieval.documents import Chunk, SourceDoc, chunk_id
from retrieval.token_count import DEFAULT_ENCODING, get_encoding


class ChunkingConfig(BaseModel):
    """`size` tokens per chunk, consecutive chunks share `overlap` tokens."""

    model_config = ConfigDict(frozen=True)

    size: int = Field(128, ge=8, le=8192)
    overlap: int = Field(32, ge=0)
    encoding: str = DEFAULT_ENCODING

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingConfig:
        if self.overlap >= self.size:
            raise ValueError(f"overlap ({self.overlap}) must be smaller than size ({self.size})")
        return self


class Chunker:
    """Splits a document into windows of `size` tokens stepping `size - overlap` tokens.

    Window edges fall on token boundaries; a character split across two tokens (multi-byte UTF-8)
    goes wholly to the window where it ends, so chunk text is always `doc.text[char_start:char_end]`.
    """

    def __init__(self, config: ChunkingConfig | None = None) -> None:
        self.config = config or ChunkingConfig()
        self._enc = get_encoding(self.config.encoding)

    def windows(self, text: str) -> list[tuple[int, int, int, int]]:
        """(token_start, token_end, char_start, char_end) of each window of `text`."""
        ids = self._enc.encode(text, disallowed_special=())
        if not ids:
            return []
        byte_ends: list[int] = []
        pos = 0
        for piece in self._enc.decode_tokens_bytes(ids):
            pos += len(piece)
            byte_ends.append(pos)
        char_at = _char_boundaries(text)
        size, step = self.config.size, self.config.size - self.config.overlap
        out: list[tuple[int, int, int, int]] = []
        start = 0
        while True:
            end = min(start + size, len(ids))
            b0 = byte_ends[start - 1] if start else 0
            cs, ce = _snap(char_at, b0), _snap(char_at, byte_ends[end - 1])
            if ce > cs:
                out.append((start, end, cs, ce))
            if end == len(ids):
                return out
            start += step

    def split(self, doc: SourceDoc) -> list[Chunk]:
        """Chunks of `doc`, each carrying its source id, user id, type, version and offsets."""
        spans = self.windows(doc.text)
        return [
            Chunk(chunk_id=chunk_id(doc.doc_type, doc.source_id, i), source_id=doc.source_id,
                  source_key=doc.source_key, doc_type=doc.doc_type, user_id=doc.user_id,
                  visibility=doc.visibility, version=doc.version, title=doc.title, text=doc.text[cs:ce],
                  chunk_index=i, n_chunks=len(spans), char_start=cs, char_end=ce, token_start=ts,
                  token_end=te, updated_at=doc.updated_at, metadata=doc.metadata)
            for i, (ts, te, cs, ce) in enumerate(spans)
        ]


def _char_boundaries(text: str) -> list[int]:
    """For each UTF-8 byte offset of `text`: the char index starting there, or -1 inside a char."""
    out = [-1] * (len(text.encode("utf-8")) + 1)
    pos = 0
    for i, ch in enumerate(text):
        out[pos] = i
        pos += len(ch.encode("utf-8"))
    out[pos] = len(text)
    return out


def _snap(char_at: list[int], byte_pos: int) -> int:
    """Char index at `byte_pos`, moving forward to the next character boundary if inside one."""
    while char_at[byte_pos] < 0:
        byte_pos += 1
    return char_at[byte_pos]
