"""Keyed fingerprints of a person's values, and a matcher that finds them again in raw text.

`kredete dsr erase` captures, before anything is erased, a keyed hash (BLAKE2b under a key derived from the
blind-index key) of every personal value of the user: email, phone, identity and account numbers, full name,
address and date of birth, each normalised for its kind. Only the hashes are kept (in the key store, outside the
data backups), never the values. `kredete dsr verify` then reads every store raw and hashes the candidate values
it finds in the text (emails, digit runs, alphanumeric tokens, word n-grams of the fingerprints' lengths, dates),
so a leftover copy is found without the verifier ever holding the value in clear.

Strong kinds (email, phone, document: identity, account and card numbers) identify a person alone: any match is
a hit. Weak kinds (name, address, date of birth) are shared by many people: a match counts only in a record that
also names the user or matches another of their values; alone it is reported as not attributable.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date

import phonenumbers

from stores.keys import Fingerprint

STRONG = ("email", "phone", "document")
WEAK = ("name", "address", "dob")
KINDS = STRONG + WEAK

_EMAIL = re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+", re.UNICODE)
#: digits with the separators people write inside phone, account and identity numbers
_DIGITS = re.compile(r"\+?\d[\d\s\-().]{5,30}\d")
_WORD = re.compile(r"\w+", re.UNICODE)
_TOKEN = re.compile(r"[^\s,;:()\[\]{}\"'<>]+")
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_DMY_DATE = re.compile(r"\b(\d{1,2})[/.](\d{1,2})[/.](\d{4})\b")
_MIN_DOCUMENT = 6
#: Values that cannot hold a person's data: UUIDs, timestamps with a time, plain numbers up to 5 digits.
_SKIP = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
                   r"|\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?|-?\d{1,5}(\.\d+)?")
_NONE: frozenset[str] = frozenset()


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold()


def _words(text: str) -> list[str]:
    return _WORD.findall(_fold(text))


def _doc(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", unicodedata.normalize("NFC", text)).upper()


class Fingerprinter:
    """Hashes values of a kind under the verification key (never stored: only its hashes are)."""

    def __init__(self, key: bytes) -> None:
        self._key = hashlib.blake2b(b"kredete-dsr-verify|" + key, digest_size=32).digest()

    def digest(self, kind: str, normalised: str) -> str:
        return hashlib.blake2b(f"{kind}|{normalised}".encode(), key=self._key, digest_size=16).hexdigest()

    def capture(self, values: dict[str, Iterable[str | None]], *, region: str | None = None) -> list[Fingerprint]:
        """Fingerprints of a person's values by kind (email, phone, document, name, address, dob)."""
        out: dict[tuple[str, str], Fingerprint] = {}

        def add(kind: str, norm: str, words: int = 0) -> None:
            if norm:
                d = self.digest(kind, norm)
                out[(kind, d)] = Fingerprint(kind, words, d)

        for kind, items in values.items():
            if kind not in KINDS:
                raise ValueError(f"unknown fingerprint kind {kind!r}")
            for raw in items:
                if not raw or not str(raw).strip():
                    continue
                value = str(raw)
                if kind == "email":
                    add("email", _fold(value).strip())
                elif kind == "phone":
                    for nsn in _national_numbers(value, region):
                        add("phone", nsn, len(nsn))
                elif kind == "document":
                    norm = _doc(value)
                    if len(norm) >= _MIN_DOCUMENT:
                        add("document", norm)
                elif kind == "dob":
                    add("dob", value.strip()[:10])
                elif kind == "name":
                    words = _words(value)
                    if len(words) >= 2:
                        add("name", " ".join(words), len(words))
                else:  # address: the whole of it and each line of two words or more
                    lines = [ln for ln in re.split(r"[\n,]+", value) if ln.strip()]
                    for part in [" ".join(lines), *lines]:
                        words = _words(part)
                        if len(words) >= 2:
                            add("address", " ".join(words), len(words))
        return list(out.values())

    def matcher(self, fingerprints: Iterable[Fingerprint]) -> Matcher:
        return Matcher(self, fingerprints)


def _national_numbers(value: str, region: str | None) -> list[str]:
    """The national significant number of a phone (what stays the same across +234 803..., 0803...)."""
    try:
        number = phonenumbers.parse(value, region)
        return [str(number.national_number)]
    except phonenumbers.NumberParseException:
        digits = re.sub(r"\D", "", value)
        return [digits.lstrip("0")] if len(digits) >= 7 else []


@dataclass(frozen=True)
class Hit:
    kind: str

    @property
    def strong(self) -> bool:
        return self.kind in STRONG


class Matcher:
    """Finds a set of fingerprints in raw text: `kinds(text)` is the set of kinds found."""

    def __init__(self, fp: Fingerprinter, fingerprints: Iterable[Fingerprint]) -> None:
        self._fp = fp
        self._digests: dict[str, str] = {}
        self._name_sizes: set[int] = set()
        self._address_sizes: set[int] = set()
        self._phone_sizes: set[int] = set()
        for f in fingerprints:
            self._digests[f.digest] = f.kind
            if f.kind == "name":
                self._name_sizes.add(f.words)
            elif f.kind == "address":
                self._address_sizes.add(f.words)
            elif f.kind == "phone":
                self._phone_sizes.add(f.words)
        self.kinds_present = set(self._digests.values())
        self._memo: dict[str, frozenset[str]] = {}

    def __bool__(self) -> bool:
        return bool(self._digests)

    def _hit(self, kind: str, norm: str) -> bool:
        return self._digests.get(self._fp.digest(kind, norm)) == kind

    def kinds(self, text: str) -> frozenset[str]:
        """The kinds of the user's values that occur in `text` (memoised: stores repeat values a lot)."""
        if not self._digests or len(text) < 4 or _SKIP.fullmatch(text):
            return _NONE
        hit = self._memo.get(text)
        if hit is None:
            hit = frozenset(self._kinds(text))
            if len(self._memo) > 200_000:
                self._memo.clear()
            self._memo[text] = hit
        return hit

    def _kinds(self, text: str) -> set[str]:
        found: set[str] = set()
        present = self.kinds_present
        if "email" in present and "@" in text:
            for m in _EMAIL.finditer(text):
                if self._hit("email", _fold(m.group(0))):
                    found.add("email")
        if ("phone" in present or "document" in present) and any(c.isdigit() for c in text):
            for m in _DIGITS.finditer(text):
                digits = re.sub(r"\D", "", m.group(0))
                if "phone" in present:
                    for cand in {digits, digits.lstrip("0"), *(digits[-n:] for n in self._phone_sizes)}:
                        if cand and self._hit("phone", cand):
                            found.add("phone")
                if "document" in present and len(digits) >= _MIN_DOCUMENT and self._hit("document", digits):
                    found.add("document")
        if "document" in present and any(c.isdigit() for c in text):
            # identity and account numbers hold digits: windows of up to 5 short tokens, starting at one with a digit
            tokens = [_doc(t) for t in _TOKEN.findall(text)]
            for i, first in enumerate(tokens):
                if not any(c.isdigit() for c in first) or len(first) > 24:
                    continue
                joined = ""
                for j in range(i, min(i + 5, len(tokens))):
                    joined += tokens[j]
                    if len(joined) > 32:
                        break
                    if len(joined) >= _MIN_DOCUMENT and self._hit("document", joined):
                        found.add("document")
                        break
        if "dob" in present:
            for d in _dates(text):
                if self._hit("dob", d):
                    found.add("dob")
        sizes = [("name", n) for n in self._name_sizes] + [("address", n) for n in self._address_sizes]
        if sizes:
            words = _words(text)
            for kind, n in sizes:
                if kind in found:
                    continue
                for gram in _ngrams(words, n):
                    if self._hit(kind, gram):
                        found.add(kind)
                        break
        return found


def _ngrams(words: list[str], n: int) -> Iterator[str]:
    for i in range(len(words) - n + 1):
        yield " ".join(words[i:i + n])


def _dates(text: str) -> Iterator[str]:
    for m in _ISO_DATE.finditer(text):
        yield m.group(0)
    for m in _DMY_DATE.finditer(text):
        day, month, year = (int(g) for g in m.groups())
        for d, mo in ((day, month), (month, day)):
            try:
                yield date(year, mo, d).isoformat()
            except ValueError:
                continue


def strings(value: object) -> Iterator[str]:
    """Every string inside a JSON-like value (dict keys excluded), numbers as text."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list | tuple | set):
        for v in value:
            yield from strings(v)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield str(value)


class RecordVerdict:
    """What a record (a row, a document, a key) holds of one user."""

    __slots__ = ("id_ref", "kinds")

    def __init__(self, id_ref: bool, kinds: set[str]) -> None:
        self.id_ref = id_ref
        self.kinds = kinds

    @property
    def strong(self) -> set[str]:
        return self.kinds & set(STRONG)

    @property
    def attributable(self) -> bool:
        """Personal data of this user: a strong value, or weak values tied to them (their id or two kinds)."""
        weak = self.kinds & set(WEAK)
        return bool(self.strong) or (bool(weak) and (self.id_ref or len(weak) >= 2))


def judge(texts: Iterable[str], user_id: str, matcher: Matcher | None) -> RecordVerdict:
    """One record's verdict for a user: does it name their id, which of their values does it hold."""
    id_ref = False
    kinds: set[str] = set()
    needle = user_id.lower()
    hexed = needle.replace("-", "")
    for t in texts:
        low = t.lower()
        if needle in low or hexed in low:
            id_ref = True
        if matcher:
            kinds |= matcher.kinds(t)
    return RecordVerdict(id_ref, kinds)
