"""Cap a tool's output to a token budget measured with tiktoken.

The output always fits, or the call fails with `OutputTooLarge`; nothing over the budget is ever returned:

1. a list tool keeps the longest prefix of its list that fits; the remaining rows stay reachable: the cursor is
   re-issued from the last row shown (`cursor_after`, supplied by the tool, keeps the repository's cursor and
   its binding to the query and scope), or, when the tool cannot re-issue one, any cursor from after the cut
   rows is dropped and the note says which smaller limit pages through everything;
2. nested lists (a dispute's letters, its history ...) are trimmed, the largest first, and `omitted` records
   how many items each trimmed list lost;
3. then the longest strings are cut (marked `…[truncated]`, a «data» delimiter stays closed);
4. if it still does not fit, `OutputTooLarge`.

A cut output carries `truncated: true` and a `note` saying what was cut and how to get the rest.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from guards.errors import GuardError
from guards.untrusted import CLOSE, OPEN

MAX_OUTPUT_TOKENS = 4000
MAX_OUTPUT_BYTES = 256 * 1024
#: Strings shorter than this are never cut (identifiers, enum values, dates, short names).
MIN_CUT_CHARS = 200
CUT_MARK = " …[truncated]"

#: `cursor_after(i)`: a cursor that resumes right after item i of the tool's list (None: cannot re-issue).
CursorAfter = Callable[[int], "str | None"]
Path = tuple[str | int, ...]


class OutputTooLarge(GuardError):
    """Even with every list trimmed and every long string cut, the output exceeds the budget."""

    decision = "error"
    public_message = ("the result is too large to return within the output budget even after trimming; "
                      "ask for less (narrower filters, a smaller limit)")


@lru_cache(maxsize=1)
def _encoding():
    from retrieval.token_count import get_encoding

    return get_encoding()


def _json(value: Any) -> str:
    # ASCII-escaped: never fewer tokens than the UTF-8 text a client receives, so the measure is conservative.
    return json.dumps(value, default=str, separators=(",", ":"))


#: Counts of the texts measured last (the trace recorder counts the very answer the budget measured before it).
_COUNTED: OrderedDict[str, int] = OrderedDict()
_COUNTED_ENTRIES = 32


def count_tokens(value: Any) -> int:
    """Tokens of a text, or of a value's compact JSON; a text counted among the last 32 is not encoded again."""
    text = value if isinstance(value, str) else _json(value)
    n = _COUNTED.get(text)
    if n is not None:
        with contextlib.suppress(KeyError):
            _COUNTED.move_to_end(text)
        return n
    n = _count(text)
    if len(text) <= MAX_OUTPUT_BYTES:
        _COUNTED[text] = n
        while len(_COUNTED) > _COUNTED_ENTRIES:
            with contextlib.suppress(KeyError):
                _COUNTED.popitem(last=False)
    return n


# --- the exact count, by segments ----------------------------------------------------------------------------
# tiktoken first splits a text into pieces with its pattern, then BPE-encodes each piece alone, so a text's count is
# the sum of its pieces' counts. With cl100k_base's pattern (checked below: another pattern falls back to encoding
# the whole text), only `\p{N}{1,3}+` ever takes a digit and it takes nothing else, so a piece boundary falls on
# each side of an ASCII digit run whose neighbours are ASCII (a digit run cannot swallow them, and nothing else can
# swallow a digit), and the pieces on each side are those of the two sides tokenised alone: the pattern has no
# look-behind, and its only look-ahead (`\s+(?!\S)`, `\s++$`) reads whitespace, so the run is split off only
# where the character before it is not whitespace. A run of n digits is then ceil(n / 3) pieces of 1-3 digits,
# one token each (every 1-3 digit string is one token of cl100k_base: checked once). The text between two runs,
# JSON keys and punctuation mostly, repeats from row to row and call to call, so its count is remembered.
# tests/unit/test_budget_count.py compares the sum with tiktoken's count of the whole text.
_CL100K = ("'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}++|\\p{N}{1,3}+| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*+|"
           "\\s++$|\\s*[\\r\\n]|\\s+(?!\\S)|\\s")
_DIGITS = re.compile(r"[0-9]+")
#: Texts between digit runs up to this long are remembered (at most _SEGMENT_ENTRIES of them, then forgotten).
_SEGMENT_CHARS = 256
_SEGMENT_ENTRIES = 8192
_SEGMENTS: dict[str, int] = {}
#: Below this many digit runs a text is encoded whole (splitting it would not save anything).
_MIN_RUNS = 8


@lru_cache(maxsize=1)
def _segmentable() -> bool:
    """Whether the encoding is cl100k_base's pattern with every 1-3 digit string one token (the premises above)."""
    enc = _encoding()
    if getattr(enc, "_pat_str", None) != _CL100K:
        return False
    digits = [f"{i:0{w}d}" for w in (1, 2, 3) for i in range(10**w)]
    return all(len(enc.encode(d, disallowed_special=())) == 1 for d in digits)  # ~2 ms, once


def _whole(text: str) -> int:
    return len(_encoding().encode(text, disallowed_special=()))


def _segment(text: str) -> int:
    n = _SEGMENTS.get(text)
    if n is None:
        n = _whole(text) if text else 0
        if len(text) <= _SEGMENT_CHARS:
            if len(_SEGMENTS) >= _SEGMENT_ENTRIES:
                _SEGMENTS.clear()
            _SEGMENTS[text] = n
    return n


def _count(text: str) -> int:
    """tiktoken's count of `text`: the sum over its digit runs and the texts between them (see above)."""
    runs = list(_DIGITS.finditer(text))
    if len(runs) < _MIN_RUNS or not _segmentable():
        return _whole(text)
    n, start, end = 0, 0, len(text)
    for run in runs:
        a, b = run.span()
        before, after = text[a - 1] if a else "", text[b] if b < end else ""
        if before.isascii() and not before.isspace() and after.isascii():  # "" (an end of the text) included
            n += _segment(text[start:a]) + (b - a + 2) // 3
            start = b
    return n + _segment(text[start:])


def fits(payload: Any, max_tokens: int = MAX_OUTPUT_TOKENS) -> bool:
    text = _json(payload)
    size = len(text.encode())
    # Every token of this byte-level BPE covers at least one byte (checked over cl100k_base's whole vocabulary,
    # tests/unit/test_budget.py): a text of at most `max_tokens` bytes fits without counting.
    return size <= MAX_OUTPUT_BYTES and (size <= max_tokens or count_tokens(text) <= max_tokens)


def fit_to_budget(payload: dict[str, Any], list_field: str | None, *, max_tokens: int = MAX_OUTPUT_TOKENS,
                  cursor_after: CursorAfter | None = None) -> tuple[dict[str, Any], bool]:
    """The payload, cut to fit `max_tokens` (and `MAX_OUTPUT_BYTES`), and whether it was cut."""
    if fits(payload, max_tokens):
        return payload, False
    cut = _Cut(payload, list_field, max_tokens, cursor_after)
    items = payload.get(list_field) if list_field else None
    if isinstance(items, list) and items:
        ok = _memo(lambda n: fits(cut.with_rows(n), max_tokens))
        best = _largest_near(ok, 1, len(items) - 1, _rows_guess(cut, items, max_tokens)) if len(items) > 1 else None
        if best is not None:
            return cut.with_rows(best), True
        cut.rows = 1  # even one row is too big: trim inside it
    if (out := cut.trim_lists()) is not None:
        return out, True
    if (out := cut.trim_strings()) is not None:
        return out, True
    raise OutputTooLarge()


def _rows_guess(cut: _Cut, items: list[Any], max_tokens: int) -> int:
    """How many rows of the list should fit, from each row's own token count. A JSON array's count is the sum of
    its rows' counts to within a token or two at each join (BPE splits text into pieces at punctuation before
    merging), so the first guess lands within a few rows of the exact cut while encoding only about one
    budget's worth of text, where bisecting from the whole list encodes many times that."""
    total = count_tokens(cut.with_rows(1))
    # What a row adds beyond its own count in the list: the comma, less what merges at the join (`},{"`).
    join = count_tokens(items[:2]) - count_tokens(items[:1]) - count_tokens(items[1])
    n = 1
    for row in items[1:]:
        total += count_tokens(row) + join
        if total > max_tokens:
            break
        n += 1
    return max(n, 1)


def _memo(ok: Callable[[int], bool]) -> Callable[[int], bool]:
    seen: dict[int, bool] = {}

    def probe(n: int) -> bool:
        if n not in seen:
            seen[n] = ok(n)
        return seen[n]

    return probe


def _largest_near(ok: Callable[[int], bool], lo: int, hi: int, guess: int) -> int | None:
    """`_largest(ok, lo, hi)`, probing outward from `guess` in doubling steps: a good guess costs two probes
    (it fits, one more row does not) where bisecting [lo, hi] costs log2(hi - lo)."""
    guess = min(max(guess, lo), hi)
    step = 1
    if ok(guess):
        good = guess
        while good < hi:
            probe = min(hi, good + step)
            if not ok(probe):
                return _largest(ok, good, probe - 1)
            good, step = probe, step * 2
        return good
    bad = guess
    while bad > lo:
        probe = max(lo, bad - step)
        if ok(probe):
            return _largest(ok, probe, bad - 1)
        bad, step = probe, step * 2
    return None


def _largest(ok: Callable[[int], bool], lo: int, hi: int) -> int | None:
    """The largest n in [lo, hi] with ok(n), for ok monotone (true up to some n); None if not even ok(lo)."""
    if not ok(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


class _Cut:
    """A payload being cut: rows kept of the tool's list, items kept per nested list, strings cut."""

    def __init__(self, payload: dict[str, Any], list_field: str | None, max_tokens: int,
                 cursor_after: CursorAfter | None) -> None:
        self.payload = payload
        self.list_field = list_field
        self.max_tokens = max_tokens
        self.cursor_after = cursor_after
        rows = payload.get(list_field) if list_field else None
        self.total_rows = len(rows) if isinstance(rows, list) else 0
        self.rows = self.total_rows
        self.keep: dict[Path, int] = {}  # nested list -> items kept
        self.strings: dict[Path, int] = {}  # string -> characters kept
        self._cursor_cache: dict[int, str | None] = {}

    # --- building a candidate ------------------------------------------------------------------
    def _cursor(self, n: int) -> str | None:
        if n not in self._cursor_cache:
            self._cursor_cache[n] = self.cursor_after(n - 1) if self.cursor_after is not None else None
        return self._cursor_cache[n]

    def with_rows(self, n: int) -> dict[str, Any]:
        self.rows = n
        return self.build()

    def build(self) -> dict[str, Any]:
        body = self._apply(self.payload, ())
        notes: list[str] = []
        omitted: dict[str, int] = {}
        if self.list_field and self.rows < self.total_rows:
            lf, n = self.list_field, self.rows
            omitted[lf] = self.total_rows - n
            cursor = self._cursor(n)
            if cursor is not None:
                body["next_cursor"] = cursor
                notes.append(f"{n} of {self.total_rows} items shown; pass next_cursor to continue right after "
                             "the last item shown")
            else:
                if "next_cursor" in body:
                    body["next_cursor"] = None  # it would skip the rows not shown
                notes.append(f"{n} of {self.total_rows} items shown; the rest are not reachable by cursor from "
                             f"here: ask for fewer (limit={n} where the tool has a limit, or narrower filters or "
                             "a shorter range)")
        for path, kept in sorted(self.keep.items(), key=lambda kv: _label(kv[0])):
            total = len(_get(self.payload, path))
            if kept < total:
                omitted[_label(path)] = total - kept
                notes.append(f"{_label(path)}: {kept} of {total} shown")
        if self.strings:
            notes.append(f"{len(self.strings)} long text(s) cut (marked {CUT_MARK.strip()})")
        body["truncated"] = True
        body["note"] = f"output capped at {self.max_tokens} tokens: " + "; ".join(notes or ["cut to fit"])
        if omitted:
            body["omitted"] = omitted
        return body

    def _apply(self, value: Any, path: Path) -> Any:
        if isinstance(value, dict):
            return {k: self._apply(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            kept = value[: self.keep.get(path, len(value))]
            if path == (self.list_field,):
                kept = kept[: self.rows]
            return [self._apply(v, (*path, i)) for i, v in enumerate(kept)]
        if isinstance(value, str) and path in self.strings:
            return _cut_string(value, self.strings[path])
        return value

    def _fits(self) -> bool:
        return fits(self.build(), self.max_tokens)

    # --- step 2: nested lists, largest first ------------------------------------------------------
    def trim_lists(self) -> dict[str, Any] | None:
        while True:
            if self._fits():
                return self.build()
            current = self._apply(self.payload, ())
            lists = [(count_tokens(v), p) for p, v in _walk(current, ())
                     if isinstance(v, list) and v and p != (self.list_field,)]
            if not lists:
                return None
            _, path = max(lists, key=lambda x: (x[0], _label(x[1])))
            now = len(_get(current, path))
            self.keep[path] = now // 2
            if self._fits():  # give back as many items of this list as still fit
                best = _largest(lambda n, at=path: self._with_keep(at, n), now // 2, now - 1)
                self.keep[path] = best if best is not None else now // 2
                return self.build()

    def _with_keep(self, path: Path, n: int) -> bool:
        self.keep[path] = n
        return self._fits()

    # --- step 3: long strings, longest first ------------------------------------------------------
    def trim_strings(self) -> dict[str, Any] | None:
        while True:
            if self._fits():
                return self.build()
            floor = MIN_CUT_CHARS // 2
            longest = [(_content_len(v), p) for p, v in _walk(self._apply(self.payload, ()), ())
                       if isinstance(v, str) and _content_len(v) > floor
                       and (p in self.strings or _content_len(v) >= MIN_CUT_CHARS)]
            if not longest:
                return None
            size, path = max(longest, key=lambda x: (x[0], _label(x[1])))
            self.strings[path] = max(floor, size // 2)  # < size: every round makes progress


def _walk(value: Any, path: Path):
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, (*path, i))


def _get(value: Any, path: Path) -> Any:
    for key in path:
        value = value[key]
    return value


def _label(path: Path) -> str:
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def _content_len(text: str) -> int:
    """Characters of a string's content: without «data» delimiters and without a cut mark."""
    if text.startswith(OPEN) and text.endswith(CLOSE):
        text = text[len(OPEN):-len(CLOSE)]
    return len(text.removesuffix(CUT_MARK))


def _cut_string(text: str, keep: int) -> str:
    """`text` cut to `keep` characters of its content; a delimited «data» value stays delimited."""
    if text.startswith(OPEN) and text.endswith(CLOSE):
        inner = text[len(OPEN):-len(CLOSE)]
        return text if len(inner) <= keep else f"{OPEN}{inner[:keep]}{CUT_MARK}{CLOSE}"
    return text if len(text) <= keep else text[:keep] + CUT_MARK
