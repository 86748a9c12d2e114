"""What a PII kind is made of, declared once per kind in `guards.redaction.kinds.<kind>`.

A unit holds its kind's patterns and validators (its recognisers), the context words that label a value of
the kind, the dict keys ("field hints") whose whole value is of the kind, and how its masked form looks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Candidate:
    """A detected span before overlap resolution; cheaper than a pydantic model on the hot path."""

    kind: str
    start: int
    end: int
    score: float
    recognizer: str


Recognizer = Callable[[str], Iterator[Candidate]]
#: A prose recogniser also gets the spans the other recognisers already claimed (an address, an email's local
#: part), so it neither double-counts them nor spends model calls on them.
ProseRecognizer = Callable[[str, Sequence[tuple[int, int]]], Iterator[Candidate]]


@dataclass(frozen=True)
class KindSpec:
    """One PII kind. `cues` is a regex body of the words that label a value of the kind ("bvn|bank
    verification"); `tail` lets the partial mask show the last four characters ("****1234")."""

    kind: str
    #: Recognisers that only ever match text holding a digit (digit-free field values skip them).
    recognizers: tuple[Recognizer, ...] = ()
    #: Recognisers that can match text without any digit (emails, spelled-out phone numbers).
    digitless: tuple[Recognizer, ...] = ()
    #: Recognisers that read prose: run on free text only, never on ids, enums, amounts or timestamps.
    prose: tuple[ProseRecognizer, ...] = ()
    cues: str | None = None
    field_hints: tuple[str, ...] = ()
    tail: bool = False
