"""PERSON rules: name-shaped word runs, weighed by the name lists, cue phrases and the gazetteer.

Each run of name-shaped words ("Ama Boateng", "A. Okafor", "OKAFOR, Chinedu", "Okafor-Eze", "de la Cruz") is
a candidate. A candidate is a person when a cue says so (a title, "paid to", "my landlord", "beneficiary",
"Dear" ...) or its words are in the name lists; it is dropped when it is a known bank, merchant or place, or
is followed by an organisation word ("... Bank", "... Stores"). Whatever is left is *undecided*: a
capitalised word nothing vouches for either way. Only those go to the NER model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from . import lexicon as lx

# A word: letters with inner apostrophes or hyphens (O'Brien, Okafor-Eze, Jae-won) but not a possessive 's;
# a single capital followed by a dot is an initial ("A.").
_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff"
_L = rf"[^\W\d_][{_MARKS}]*"  # a letter with its combining marks ("ọ̀" has no precomposed form)
_WORD = re.compile(rf"{_L}(?:{_L}|['’](?![sS]\b)(?={_L})|-(?={_L}))*(?:(?<=\b[A-Z])\.)?")
_PARTICLES = frozenset({"de", "la", "van", "der", "von", "da", "del", "di", "le", "wa", "ole", "bin", "binti",
                        "al", "el", "mac", "ben", "st", "st."})

def _wordlist(text: str) -> list[str]:
    return text.split()


TITLES = frozenset(_wordlist("""
mr mrs ms miss mx dr prof chief alhaji alh alhaja hajia haji mallam malam madam madame sir dame lady lord engr
barr pastor rev revd reverend hon oba otunba prince princess sen gov capt col gen bishop imam deacon deaconess
nana mzee mwalimu ambassador mama baba auntie aunty uncle
"""))
# Words right before a name that say it is one (lower-cased, as a run of words ending just before it).
_CUES_BEFORE = (
    "paid to", "pay to", "payment to", "sent to", "send to", "sending to", "transfer to", "transferred to",
    "transfer for", "credit to", "credit", "collected by", "approved by", "signed by", "from my", "to my",
    "landlord", "landlady", "tenant", "brother", "sister", "bro", "sis", "mum", "mom", "dad", "son",
    "daughter", "wife", "husband", "cousin", "nephew", "niece", "uncle", "aunt", "aunty", "auntie", "friend",
    "relative", "agent", "guarantor", "beneficiary", "payee", "payer", "recipient", "sender", "holder",
    "account holder", "joint holder", "account name", "name", "name is", "names", "dear", "attention",
    "attn", "hello", "hi", "hey", "thanks", "im", "i'm", "i am", "this is", "spoke with", "spoke to",
    "speaking with", "call", "called", "email", "text", "whatsapp", "ask", "asked", "tell", "told", "from",
    "for", "to", "by", "with", "and", "noted", "regards", "faithfully", "sincerely", "contact", "via",
)
# Cues that need nothing else (a title or a label): one of these alone makes the next word run a person.
_STRONG_BEFORE = frozenset((
    "paid to", "pay to", "sent to", "send to", "transfer to", "transferred to", "collected by", "approved by",
    "signed by", "landlord", "landlady", "tenant", "brother", "sister", "mum", "mom", "dad", "son", "daughter",
    "wife", "husband", "cousin", "nephew", "niece", "uncle", "aunt", "aunty", "auntie", "friend", "relative",
    "agent", "guarantor", "beneficiary", "payee", "payer", "recipient", "sender", "holder", "account holder",
    "joint holder", "account name", "name", "name is", "dear", "attention", "attn", "hello", "hi", "hey",
    "im", "i'm", "i am", "spoke with", "spoke to", "speaking with", "faithfully", "sincerely", "regards",
    "noted",
))
_CUES_AFTER = re.compile(
    r"[ \t]*(?:'s\b|’s\b|\((?:the )?(?:customer'?s? |my |his |her )?(?:brother|sister|guarantor|landlord|agent|"
    r"tenant|cousin|wife|husband)|(?:called|calls|says|said|confirmed|confirms|denies|denied|phoned|wants|wanted|"
    r"asked|will call|is waiting|sent|paid|replied|agreed|signed)\b)",
    re.IGNORECASE,
)
_CUES_SET = frozenset(_CUES_BEFORE)
_CODE = re.compile(r"[A-Z]{2,3}-[A-Z]{2,3}|[A-Z]{2,5}-[A-Z0-9]{6,}")
_HOUSE_NUMBER = re.compile(r"(?<![\w.,])\d{1,6}[A-Za-z]?,?[ \t]+$")
# Mean trigram log-odds past which a word's spelling decides (see lexicon.name_likeness).
_NAMELIKE, _WORDLIKE = 0.6, -0.7
_PARTS = re.compile(r"['-]")
_DIGIT_TAIL = re.compile(r"-?\d")
_NEXT_WORD = re.compile(r"[ \t]+([^\W\d_]+)")
_SENTENCE_START = re.compile(r"(?:^|[.!?:\n]\s*|\n\s*[a-z]+:\s*)$")
_TITLE_BEFORE = re.compile(r"(?<![\w.])(?i:" + "|".join(sorted(TITLES, key=len, reverse=True)) + r")\.?[ \t]+$")
# "agent: ..." / "customer: ..." at the start of a chat line is a speaker label, not a cue.
_SPEAKER = re.compile(r"(?:^|\n)[ \t]*(?:agent|customer|support|user|client|staff|me|bot|system|cs):[ \t]*$")


@dataclass(frozen=True, slots=True)
class Candidate:
    start: int
    end: int
    score: float
    decided: bool  # False: the model decides


@lru_cache(maxsize=65536)
def _shape(word: str) -> str:
    core = word.rstrip(".")
    if len(core) == 1 and word.endswith(".") and core.isupper():
        return "initial"
    if core.isupper() and len(core) > 1:
        return "upper"
    if core[0].isupper():
        return "cap"
    return "lower"


def _words(text: str) -> list[tuple[int, int, str]]:
    """Words, without those glued to digits (hex ids, "S24", "KRD-2024"): codes, never names."""
    out = []
    n = len(text)
    for m in _WORD.finditer(text):
        s, e = m.span()
        if (s and text[s - 1].isdigit()) or (e < n and text[e].isdigit()):
            continue
        out.append((s, e, m.group()))
    return out


@lru_cache(maxsize=65536)
def _key(word: str) -> str:
    return word.rstrip(".").replace("’", "'").lower()


@lru_cache(maxsize=65536)
def _is_name(word: str) -> bool:
    k = _key(word)
    if lx.is_name_word(k):
        return True
    # Hyphenated or apostrophe names: any part in the lists (Okafor-Eze, Owusu-Ansah, O'Sullivan).
    parts = _PARTS.split(k)
    return len(parts) > 1 and any(len(p) > 2 and lx.is_name_word(p) for p in parts)


def _cue_before(text: str, start: int) -> tuple[bool, bool]:
    """(any cue, strong cue) in the one to three words right before `start`."""
    lo = max(0, start - 24)
    window = text[lo:start]
    stripped = window.rstrip(" \t\n:,-")
    if not stripped or not stripped[-1].isalpha():
        return False, False
    if _SPEAKER.search(window) and (lo == 0 or "\n" in window):
        return False, False  # "agent: ..." / "customer: ...": a chat speaker label, not a cue
    tail = stripped.lower().split()
    if not tail or (len(tail) == 1 and lo > 0 and text[lo - 1].isalnum()):
        return False, False
    for n in (3, 2, 1):
        if len(tail) >= n:
            cue = " ".join(tail[-n:])
            if n == len(tail) and lo > 0 and text[lo - 1].isalnum():
                continue  # the first word of the window may be cut
            if cue in _CUES_SET:
                return True, cue in _STRONG_BEFORE
    return False, False


def _runs(text: str, words: list[tuple[int, int, str]]) -> list[list[int]]:
    """Indexes of consecutive name-shaped words (capitalised, all caps, initials; particles inside)."""
    runs: list[list[int]] = []
    cur: list[int] = []
    for i, (s, _e, w) in enumerate(words):
        shape = _shape(w)
        gap = text[words[i - 1][1]:s] if i else ""
        joined = bool(cur) and gap in (" ", ", ", " ,", "  ") and "\n" not in gap
        # "OKAFOR, Chinedu": a comma joins only a run in capitals to a capitalised word (bureau style).
        if joined and "," in gap and not (_shape(words[cur[-1]][2]) == "upper" and shape == "cap" and len(cur) == 1):
            joined = False
        if shape in ("cap", "upper", "initial") or (shape == "lower" and _key(w) in _PARTICLES and cur):
            if cur and not joined:
                runs.append(cur)
                cur = []
            cur.append(i)
        else:
            if cur:
                runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    # Trailing particles are not part of a name.
    out = []
    for r in runs:
        while r and _key(words[r[-1]][2]) in _PARTICLES:
            r = r[:-1]
        if r:
            out.append(r)
    return out


def _plausible_lower(word: str) -> bool:
    """A lower-case word that could be part of a name: on the name lists, or not an English word we know."""
    k = _key(word)
    if k in lx.common_words() or k in lx.GAZETTEER:
        return False
    return _is_name(word) or k not in lx.vocabulary()


def _lower_runs(text: str, words: list[tuple[int, int, str]]) -> list[list[int]]:
    """Names typed in lower case: two name-list words in a row ("ama boateng"), or after a cue ("sent money to
    ama boateng", "hi im kofi") one to three plausible name words of which one is on the lists or the cue
    is strong."""
    out = []
    i = 0
    while i < len(words):
        s, _e, w = words[i]
        if _shape(w) != "lower" or not _plausible_lower(w):
            i += 1
            continue
        j = i + 1
        while j < len(words) and j - i < 3 and _shape(words[j][2]) == "lower" \
                and text[words[j - 1][1]:words[j][0]] == " " and _plausible_lower(words[j][2]):
            j += 1
        run = list(range(i, j))
        listed = sum(_is_name(words[k][2]) for k in run)
        any_cue, strong = _cue_before(text, s)
        # One lower-case word needs a strong cue ("hi im kofi"); "by grace of God" is not a name.
        if listed >= 2 or (strong and (listed >= 1 or len(run) > 1)) or (any_cue and listed >= 1 and len(run) > 1):
            out.append(run)
        i = j
    return out


def candidates(text: str) -> list[Candidate]:
    """Name candidates in `text`, each decided (a person) or left to the model; rejected runs are omitted."""
    words = _words(text)
    if "&" in text:  # "Marks & Spencer": gazetteer names that are not plain word runs
        taken = [m.span() for m in lx.AMPERSAND_NAMES.finditer(text)]
        if taken:
            words = [w for w in words if not any(a <= w[0] < b for a, b in taken)]
    out: list[Candidate] = []
    for run in _runs(text, words):
        for piece, lead in _split(words, run):
            c = _judge(text, words, piece, lead)
            if c is not None:
                out.append(c)
    for run in _lower_runs(text, words):
        s, e = words[run[0]][0], words[run[-1]][1]
        out.append(Candidate(s, e, 0.75, True))
    return _coordinate(text, out)


def _coordinate(text: str, cands: list[Candidate]) -> list[Candidate]:
    """"Gift for Morag and Ffion": a candidate joined by "and"/"&"/"or" to a decided name is decided too."""
    cands.sort(key=lambda c: c.start)
    for _ in range(2):
        for i in range(len(cands) - 1):
            a, b = cands[i], cands[i + 1]
            if a.decided == b.decided or not _AND.fullmatch(text, a.end, b.start):
                continue
            if a.decided:
                cands[i + 1] = Candidate(b.start, b.end, 0.7, True)
            else:
                cands[i] = Candidate(a.start, a.end, 0.7, True)
    return cands


_AND = re.compile(r"[ \t]*(?:,|and|&|or|,[ \t]*and)[ \t]*", re.IGNORECASE)


def _split(words: list[tuple[int, int, str]], run: list[int]) -> list[tuple[list[int], str]]:
    """Cut a run at titles, ordinary words and gazetteer entries: "Beneficiary Kobby Amenyo" -> "Kobby Amenyo"
    led by "beneficiary"; "Mama Cass Takoradi" -> nothing. Each piece carries the words that led it."""
    keys = [_key(words[i][2]) for i in run]
    pieces: list[tuple[list[int], str]] = []
    cur: list[int] = []
    lead: list[str] = []
    i = 0
    while i < len(run):
        # Longest gazetteer phrase starting here (with a title in front: "Mr Biggs", "Mama Cass").
        hit = 0
        for j in range(min(len(run), i + 4), i, -1):
            if " ".join(keys[i:j]) in lx.GAZETTEER:
                hit = j - i
                break
        if hit:
            if cur:
                pieces.append((cur, " ".join(lead)))
            cur, lead = [], []
            i += hit
            # A model or outlet name right after a brand ("Tecno Camon", "Galaxy S24") belongs to the brand,
            # unless it opens another gazetteer entry ("Mama Cass New York").
            if i < len(run) and not _is_name(words[run[i]][2]) and not _gazetteer_at(keys, i):
                i += 1
            continue
        k = keys[i]
        if not cur and _shape(words[run[i]][2]) != "initial" and (k in TITLES or k in lx.common_words()):
            lead.append(k)
            i += 1
            continue
        cur.append(run[i])
        i += 1
    if cur:
        pieces.append((cur, " ".join(lead)))
    # A title right before a gazetteer entry ("Mr Biggs") was swallowed into `lead` of nothing: fine.
    return pieces


def _gazetteer_at(keys: list[str], i: int) -> bool:
    return any(" ".join(keys[i:j]) in lx.GAZETTEER for j in range(i + 1, min(len(keys), i + 4) + 1))


def _judge(text: str, words: list[tuple[int, int, str]], run: list[int], lead: str) -> Candidate | None:
    toks = [words[i][2] for i in run]
    keys = [_key(t) for t in toks]
    lead_words = lead.split()
    titled = any(w in TITLES for w in lead_words) or _TITLE_BEFORE.search(text, max(0, words[run[0]][0] - 12),
                                                                          words[run[0]][0]) is not None
    # Trailing ordinary words are not part of the name ("Kofi Thanks").
    while len(run) > 1 and (keys[-1] in lx.common_words() or keys[-1] in lx.GAZETTEER):
        run, toks, keys = run[:-1], toks[:-1], keys[:-1]
    start, end = words[run[0]][0], words[run[-1]][1]
    # Glued to digits or a "-123" tail: a code or an id ("KRD-474283", "S24"), never a name.
    if _DIGIT_TAIL.match(text, end) or (start and text[start - 1].isdigit()):
        return None
    nxt = _NEXT_WORD.match(text, end, end + 24)
    if (nxt and nxt.group(1).lower() in lx.ORG_SUFFIXES) or keys[-1] in lx.ORG_SUFFIXES:
        return None
    if all(k in lx.common_words() or k in lx.GAZETTEER for k in keys) and not titled:
        return None
    lead_strong = (bool(lead_words) and " ".join(lead_words[-2:]) in _STRONG_BEFORE) or (
        bool(lead_words) and lead_words[-1] in _STRONG_BEFORE)
    lead_start = words[run[0]][0] if not lead_words else words[run[0] - len(lead_words)][0]
    any_cue, strong = _cue_before(text, lead_start)
    any_cue = any_cue or bool(lead_words)
    strong = strong or lead_strong
    cue_after = _CUES_AFTER.match(text, end) is not None
    names = [_is_name(t) for t in toks]
    plain = [not (k in lx.common_words() or k in lx.GAZETTEER) for k in keys]
    vouched = [n and p for n, p in zip(names, plain, strict=True)]
    shapes = [_shape(t) for t in toks]
    initials = shapes.count("initial")
    at_start = not lead_words and _SENTENCE_START.search(text[max(0, start - 40):start]) is not None
    if titled or strong:
        return Candidate(start, end, 0.85, True)
    # Bureau style "OKAFOR, Chinedu": the layout itself says it is a name.
    if len(toks) == 2 and shapes == ["upper", "cap"] and text[words[run[0]][1]:words[run[1]][0]].startswith(","):
        return Candidate(start, end, 0.8, True)
    if any(vouched) and (len(toks) > 1 or any_cue or cue_after or not at_start or names[0]):
        return Candidate(start, end, 0.8, True)
    if initials and len(toks) > initials and any(p for p, sh in zip(plain, shapes, strict=True) if sh != "initial"):
        return Candidate(start, end, 0.75, True)  # "A. Okafor"
    if cue_after and any(plain):
        return Candidate(start, end, 0.7, True)
    if not any(plain):
        return None
    if len(toks) == 1 and shapes[0] == "upper" and len(keys[0]) <= 4 and not names[0]:
        return None  # an acronym ("NINO", "KYC", "ATM")
    if any(_CODE.fullmatch(t) for t in toks):
        return None  # "GB-GH", "KRD-IVCNNUUNMUNB": corridor and reference codes
    if _HOUSE_NUMBER.search(text, max(0, start - 8), start):
        return None  # "12 Melanie Village": a street, left to the address unit
    # Words no list knows: their spelling can still settle it before the model is asked.
    unknown = [k for k, n, p in zip(keys, names, plain, strict=True) if p and not n and len(k) > 2]
    if unknown:
        lean = sum(lx.name_likeness().score(k) for k in unknown) / len(unknown)
        if lean <= _WORDLIKE and at_start and len(toks) == 1 and not any_cue:
            return None
        if lean >= _NAMELIKE and (any_cue or not at_start or len(toks) > 1):
            return Candidate(start, end, 0.65, True)
    if at_start and len(toks) == 1 and keys[0] in lx.vocabulary() and not any_cue:
        return None  # "Holding funds.", "Spoke with ...": an ordinary word opening a sentence
    if any_cue or not at_start or len(toks) > 1:
        return Candidate(start, end, 0.6, False)
    return Candidate(start, end, 0.5, False)
