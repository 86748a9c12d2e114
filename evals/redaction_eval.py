"""Redaction quality on the generated labelled corpus: precision/recall/F1 per PiiKind, leaks, false positives."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from evals.metrics import PRF, Span, match_spans, merge, micro
from evals.redaction_corpus import build_corpus
from evals.redaction_freetext import build_freetext


def _spans(red: Any) -> list[Span]:
    return [Span(f.kind.value, f.start, f.end) for f in red.findings]


def run(seed: int = 20260101, progress: Any = None) -> dict[str, Any]:
    """Two views of the same corpus: recognisers alone, and with the person names the server knows
    (`known_names`, as `redact_payload` passes for the users in a payload). `masked` ignores the kind:
    a value detected under the wrong kind is still not leaked."""
    from guards.redaction import redact

    positives, negatives, hard = build_corpus(seed)
    out: dict[str, Any] = {"seed": seed, "documents": len(positives), "negative_documents": len(negatives),
                           "gold_spans": sum(len(d.spans) for d in positives), "variants": {}}
    for variant in ("recognisers", "known_names"):
        typed: dict[str, PRF] = {}
        masked: dict[str, PRF] = {}
        misses: Counter[str] = Counter()
        examples: list[dict[str, Any]] = []
        for d in positives:
            known = [d.text[s.start:s.end] for s in d.spans if s.kind == "PERSON"] if variant == "known_names" else None
            pred = _spans(redact(d.text, known_names=known))
            per = match_spans(d.spans, pred)
            merge(typed, per)
            merge(masked, match_spans(d.spans, pred, same_kind=False))
            if any(v.fn or v.fp for v in per.values()):
                misses[d.template] += 1
                if len(examples) < 15:
                    examples.append({"text": d.text, "gold": [s.__dict__ for s in d.spans],
                                     "found": [s.__dict__ for s in pred]})
            if progress:
                progress()
        total = micro(typed)
        out["variants"][variant] = {
            "per_kind": {k: v.as_dict() for k, v in sorted(typed.items())},
            "micro": total.as_dict(),
            "macro_f1": round(sum(v.f1 for v in typed.values()) / len(typed), 4),
            # recall when any kind counts: the share of gold values that did not leak.
            "masked_recall": round(micro({k: PRF(v.tp, 0, v.fn) for k, v in masked.items()}).recall, 4),
            "worst_templates": [{"template": t, "docs_with_errors": n} for t, n in misses.most_common(8)],
            "examples": examples,
        }
    out["false_positive_check"] = _false_positives(negatives, redact, progress)
    out["false_positive_check_hard"] = _false_positives(hard, redact, progress)
    out["free_text"] = _free_text(seed, redact, progress)
    return out


def _free_text(seed: int, redact: Any, progress: Any) -> dict[str, Any]:
    """Memos, dispute notes, bureau letters and chats: PERSON (and obfuscated contacts) with no known names,
    split by whether the name's words are in the detector's name lists (the rest must come from cues or the
    model), plus the PII-free hard negatives (merchants, banks, places, Luhn-valid order numbers)."""
    from guards.redaction.kinds.person import lexicon

    positives, negatives = build_freetext(seed)
    typed: dict[str, PRF] = {}
    split = {"in_lexicon": PRF(), "out_of_lexicon": PRF()}
    by_genre: dict[str, PRF] = {}
    misses: list[str] = []
    for d in positives:
        pred = _spans(redact(d.text))
        merge(typed, match_spans(d.spans, pred))
        for g in d.spans:
            if g.kind != "PERSON":
                continue
            words = [w.lower() for w in re.findall(r"[^\W\d_]+", d.text[g.start:g.end]) if len(w) > 1]
            bucket = "in_lexicon" if words and all(lexicon.is_name_word(w) for w in words) else "out_of_lexicon"
            hit = any(p.kind == "PERSON" and p.overlaps(g) for p in pred)
            split[bucket].tp += hit
            split[bucket].fn += not hit
            genre = d.template.split(":", 1)[0]
            by_genre.setdefault(genre, PRF())
            by_genre[genre].tp += hit
            by_genre[genre].fn += not hit
            if not hit and len(misses) < 15:
                misses.append(d.text[max(0, g.start - 30):g.end + 20])
        if progress:
            progress()
    return {"documents": len(positives), "gold_spans": sum(len(d.spans) for d in positives),
            "per_kind": {k: v.as_dict() for k, v in sorted(typed.items())},
            "person_recall_by_lexicon": {k: v.as_dict()["recall"] for k, v in split.items()},
            "person_spans_by_lexicon": {k: v.tp + v.fn for k, v in split.items()},
            "person_recall_by_genre": {k: v.as_dict()["recall"] for k, v in sorted(by_genre.items())},
            "person_misses": misses,
            "hard_negatives": _false_positives(negatives, redact, progress)}


def _false_positives(docs: list[Any], redact: Any, progress: Any) -> dict[str, Any]:
    kinds: Counter[str] = Counter()
    templates: Counter[str] = Counter()
    examples = []
    with_fp = 0
    for d in docs:
        found = redact(d.text).findings
        for f in found:
            kinds[f.kind.value] += 1
        if found:
            with_fp += 1
            templates[d.template] += 1
            if len(examples) < 10:
                examples.append({"text": d.text, "found": [(f.kind.value, d.text[f.start:f.end]) for f in found]})
        if progress:
            progress()
    return {"documents": len(docs), "documents_with_findings": with_fp, "findings": sum(kinds.values()),
            "by_kind": dict(kinds), "by_template": dict(templates), "rate": round(with_fp / len(docs), 4),
            "examples": examples}


def steps(seed: int = 20260101) -> int:
    positives, negatives, hard = build_corpus(seed)
    fpos, fneg = build_freetext(seed)
    return 2 * len(positives) + len(negatives) + len(hard) + len(fpos) + len(fneg)
