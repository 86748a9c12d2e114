"""Text normalisation before recognition, with a map back to the original offsets.

PII written with look-alike characters (no-break or thin spaces, en-dashes, full-width '＠' or digits,
zero-width spaces, decomposed accents) must be detected like its ASCII form, yet findings keep indexing
the ORIGINAL text and the output keeps every character outside a finding. So recognisers run on a
normalised copy and each finding is mapped back to the original characters it came from.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# Invisible characters: dropped, so "4111<ZWSP>1111..." reads as the digits a human sees.
_DROP = frozenset("\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b\u200c\u200d\u200e\u200f"
                  "\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\ufeff")
# What NFKC leaves alone but a reader takes for ASCII punctuation.
_FOLD: dict[str, str] = {
    **dict.fromkeys("\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
                    "\u202f\u205f\u3000", " "),
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2043\u2212\u2e3a\u2e3b\ufe58\ufe63\uff0d", "-"),
    **dict.fromkeys("\u2044\u2215\u29f8", "/"),
    **dict.fromkeys("\u3002\uff61\u2024\ufe52\u00b7\u2027", "."),
    **dict.fromkeys("\ufe6b\uff20", "@"),
    **dict.fromkeys("\u2028\u2029\u0085", "\n"),
}


_NON_ASCII = re.compile(r"[^\x00-\x7f]")


@lru_cache(maxsize=8192)
def _fold_cluster(cluster: str) -> str:
    """ASCII-ish form of one base character plus its combining marks."""
    out = []
    folded = unicodedata.normalize("NFKC", cluster)
    # Accents only mean something on letters; on a digit or a dot they just break the number up.
    bare = not folded[:1].isalpha()
    for ch in folded:
        if ch in _DROP or (bare and unicodedata.combining(ch)):
            continue
        ch = _FOLD.get(ch, ch)
        if not ch.isascii() and ch.isdigit():
            d = unicodedata.decimal(ch, None)  # Arabic-Indic, Devanagari ... digits
            ch = str(d) if d is not None else ch
        out.append(ch)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Normalised:
    """`text` is what recognisers see; `starts[j]`/`ends[j]` are the original span of its character j."""

    text: str
    starts: list[int] | None = None  # None: identical to the original
    ends: list[int] | None = None

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Original (start, end) of the normalised span [start, end)."""
        if self.starts is None or self.ends is None:
            return start, end
        return self.starts[start], self.ends[end - 1]


def normalise(text: str) -> Normalised:
    """NFKC per character cluster, Unicode spaces/dashes/slashes/dots/'@' folded to ASCII, zero-width
    characters dropped, every decimal digit written as 0-9. ASCII text is returned as is (the fast path)."""
    if text.isascii():
        return Normalised(text)
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    n = len(text)
    i = 0
    while i < n:
        # Copy ASCII stretches wholesale; only non-ASCII clusters go through the per-character path.
        m = _NON_ASCII.search(text, i)
        j = m.start() if m is not None else n
        if i < j < n and unicodedata.combining(text[j]):
            j -= 1  # an ASCII base composes with the combining marks after it ("o" + U+0308 -> "ö")
        if j > i:
            out.append(text[i:j])
            starts.extend(range(i, j))
            ends.extend(range(i + 1, j + 1))
            i = j
            if i >= n:
                break
        k = i + 1
        while k < n and unicodedata.combining(text[k]):
            k += 1
        rep = _fold_cluster(text[i:k])
        out.append(rep)
        starts.extend([i] * len(rep))
        ends.extend([k] * len(rep))
        i = k
    norm = "".join(out)
    if norm == text:
        return Normalised(text)
    return Normalised(norm, starts, ends)
