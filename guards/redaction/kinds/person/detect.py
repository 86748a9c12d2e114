"""PERSON in free text: the rules decide what they can; the NER model sees only short windows around the
candidates they leave undecided, so most texts never reach it (the fast path stays fast)."""

from __future__ import annotations

import contextlib
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextvars import ContextVar

from . import model as ner
from . import rules

# Context the model sees around an undecided candidate: enough words to read "paid to X" or "X called".
_WINDOW_BEFORE = 40
_WINDOW_AFTER = 24
_BREAK = re.compile(r"\s")
_MAX_WINDOW = 240  # characters: well under the model's 128 tokens
# Model windows one redaction may spend (~10 ms each on one core). Past it, undecided candidates are masked
# unverified: a hostile text full of unknown capitalised words costs bounded time and still leaks nothing.
MAX_MODEL_WINDOWS = 64
_budget: ContextVar[list[int] | None] = ContextVar("ner_budget", default=None)


@contextlib.contextmanager
def model_budget(windows: int = MAX_MODEL_WINDOWS) -> Iterator[None]:
    """Bound the model calls of everything run inside (one `redact` call, however many chunks)."""
    if _budget.get() is not None:  # nested: the outer budget applies
        yield
        return
    token = _budget.set([windows])
    try:
        yield
    finally:
        _budget.reset(token)


def _spend() -> bool:
    left = _budget.get()
    if left is None:
        return True
    if left[0] <= 0:
        return False
    left[0] -= 1
    return True


def _window(text: str, start: int, end: int) -> tuple[int, int]:
    lo = max(0, start - _WINDOW_BEFORE)
    hi = min(len(text), end + _WINDOW_AFTER)
    # Whole words only, so the tokenizer sees what a reader sees.
    while lo > 0 and not _BREAK.match(text[lo - 1]) and start - lo < _WINDOW_BEFORE + 16:
        lo -= 1
    while hi < len(text) and not _BREAK.match(text[hi]) and hi - end < _WINDOW_AFTER + 16:
        hi += 1
    return lo, hi


_CACHE_SIZE = 16_384
_cache: OrderedDict[tuple[str, str], tuple[tuple[int, int], ...]] = OrderedDict()
_cache_lock = threading.Lock()


def _cached(model_name: str, window: str) -> tuple[tuple[int, int], ...] | None:
    with _cache_lock:
        hit = _cache.get((model_name, window))
        if hit is not None:
            _cache.move_to_end((model_name, window))
        return hit


def _model_spans(model_name: str, window: str) -> tuple[tuple[int, int], ...]:
    m = ner.get_model(model_name)
    spans = tuple(m.persons([window])[0]) if m is not None else ()
    with _cache_lock:
        _cache[(model_name, window)] = spans
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return spans


def find_persons(text: str, model_name: str | None = None, taken: Sequence[tuple[int, int]] = ()
                 ) -> Iterator[tuple[int, int, float, str]]:
    """(start, end, score, recogniser) for each person name in `text`, skipping spans in `taken` (already
    claimed by another kind: a street name inside an address, an email's local part)."""
    cands = rules.candidates(text)
    if taken:
        cands = [c for c in cands if not any(a < c.end and c.start < b for a, b in taken)]
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
        # Merge touching windows, but never past what the model reads whole (it truncates long input).
        if windows and lo <= windows[-1][1] and hi - windows[-1][0] <= _MAX_WINDOW:
            windows[-1] = (windows[-1][0], max(hi, windows[-1][1]))
        else:
            windows.append((lo, hi))
    found: list[tuple[int, int]] = []
    unread: list[tuple[int, int]] = []
    for lo, hi in windows:
        window = text[lo:hi]
        cached = _cached(name, window)
        if cached is None and not _spend():
            unread.append((lo, hi))
            continue
        found.extend((lo + a, lo + b) for a, b in (cached if cached is not None else _model_spans(name, window)))
    for c in undecided:
        if any(a < c.end and c.start < b for a, b in found):
            yield c.start, c.end, 0.7, f"person_{name}"
        elif any(lo <= c.start and c.end <= hi for lo, hi in unread):
            yield c.start, c.end, 0.5, "person_unverified"


def clear_cache() -> None:
    """Forget cached model windows (benchmarks time cold reads)."""
    with _cache_lock:
        _cache.clear()
