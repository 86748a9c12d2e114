"""PERSON in free text: the rules decide what they can; the NER model sees only short windows around the
candidates they leave undecided, so most texts never reach it (the fast path stays fast)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

from . import model as ner
from . import rules

# Context the model sees around an undecided candidate: enough words to read "paid to X" or "X called".
_WINDOW_BEFORE = 40
_WINDOW_AFTER = 24
_BREAK = re.compile(r"\s")


def _window(text: str, start: int, end: int) -> tuple[int, int]:
    lo = max(0, start - _WINDOW_BEFORE)
    hi = min(len(text), end + _WINDOW_AFTER)
    # Whole words only, so the tokenizer sees what a reader sees.
    while lo > 0 and not _BREAK.match(text[lo - 1]) and start - lo < _WINDOW_BEFORE + 16:
        lo -= 1
    while hi < len(text) and not _BREAK.match(text[hi]) and hi - end < _WINDOW_AFTER + 16:
        hi += 1
    return lo, hi


@lru_cache(maxsize=16384)
def _model_spans(model_name: str, window: str) -> tuple[tuple[int, int], ...]:
    m = ner.get_model(model_name)
    return tuple(m.persons([window])[0]) if m is not None else ()


def find_persons(text: str, model_name: str | None = None) -> Iterator[tuple[int, int, float, str]]:
    """(start, end, score, recogniser) for each person name in `text`."""
    cands = rules.candidates(text)
    if not cands:
        return
    name = model_name or ner.configured_name()
    undecided = [c for c in cands if not c.decided]
    for c in cands:
        if c.decided:
            yield c.start, c.end, c.score, "person_rules"
    if not undecided or name == "none":
        return
    # One window per undecided candidate, merged where they touch; windows repeat (templates, memos), so
    # their model output is cached by content.
    windows: list[tuple[int, int]] = []
    for c in undecided:
        lo, hi = _window(text, c.start, c.end)
        if windows and lo <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(hi, windows[-1][1]))
        else:
            windows.append((lo, hi))
    found: list[tuple[int, int]] = []
    for lo, hi in windows:
        found.extend((lo + a, lo + b) for a, b in _model_spans(name, text[lo:hi]))
    for c in undecided:
        if any(a < c.end and c.start < b for a, b in found):
            yield c.start, c.end, 0.7, f"person_{name}"
