"""Data types shared by the redaction modules."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from .kinds import PiiKind
from .spec import Candidate

__all__ = ["Action", "Candidate", "Finding", "PiiKind", "Redaction"]


class Action(StrEnum):
    """What to do with a detected span."""

    MASK = "mask"  # [KIND]
    PARTIAL = "partial"  # ****1234
    HASH = "hash"  # [KIND:hmac8]
    KEEP = "keep"  # leave the value in place (still reported)


class Finding(BaseModel):
    """One detected span. Offsets index the ORIGINAL text; the raw value is never stored."""

    model_config = ConfigDict(frozen=True)

    kind: PiiKind
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    score: float = Field(ge=0.0, le=1.0)
    recognizer: str
    action: Action = Action.MASK


class Redaction(BaseModel):
    """Result of :func:`guards.redaction.redact`."""

    text: str
    findings: list[Finding] = Field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Number of findings per kind (kinds with zero findings omitted)."""
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.kind.value] = out.get(f.kind.value, 0) + 1
        return out
