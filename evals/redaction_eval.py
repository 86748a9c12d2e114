"""Redaction quality on the generated labelled corpus: precision/recall/F1 per PiiKind, leaks, false positives."""

from __future__ import annotations

from collections import Counter
from typing import Any

from evals.metrics import PRF, Span, match_spans, merge, micro
from evals.redaction_corpus import build_corpus


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
    return out


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
    return 2 * len(positives) + len(negatives) + len(hard)
