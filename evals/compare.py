"""`kredete evals compare A B`: the deltas between two evals reports (B minus A), section by section.

Pure functions over two `report.json` files; a metric missing from one side is shown as missing, never as 0.
For quality metrics higher is better; for latencies and mismatches lower is better (the `better` column says
which way the change went)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: (section, metric, value in A, value in B, higher is better)
Row = tuple[str, str, float | None, float | None, bool]


def load(path: Path) -> dict[str, Any]:
    """A report folder or its report.json."""
    p = path / "report.json" if path.is_dir() else path
    return json.loads(p.read_text())


def _retrieval(r: dict[str, Any]) -> dict[str, float]:
    out = {}
    for mode, m in (r.get("modes") or {}).items():
        for k in ("ndcg@10", "recall@5", "mrr", "ndcg@5", "recall@1"):
            if k in m:
                out[f"{mode} {k}"] = m[k]
        if "latency" in m:
            out[f"{mode} p50 ms"] = m["latency"]["p50_ms"]
    return out


def _redaction(r: dict[str, Any]) -> dict[str, float]:
    out = {}
    for variant, v in (r.get("variants") or {}).items():
        out[f"{variant} micro F1"] = v["micro"]["f1"]
        out[f"{variant} masked recall"] = v["masked_recall"]
    if "false_positive_check" in r:
        out["false-positive docs"] = r["false_positive_check"]["documents_with_findings"]
    return out


def _permissions(r: dict[str, Any]) -> dict[str, float]:
    return {"mismatches": len(r.get("mismatches", [])), "granted but failed": len(r.get("granted_but_failed", []))}


def _latency(r: dict[str, Any]) -> dict[str, float]:
    return {f"{t} p50 ms": m["p50_ms"] for t, m in (r.get("tools") or {}).items()}


FLATTEN = {"retrieval": _retrieval, "redaction": _redaction, "permissions": _permissions, "latency": _latency}


def _higher_is_better(metric: str) -> bool:
    return not any(w in metric for w in ("ms", "mismatch", "failed", "false-positive"))


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[Row]:
    """(section, metric, value in A, value in B, higher is better) for every metric in either report."""
    rows: list[Row] = []
    for section, flat in FLATTEN.items():
        ra, rb = a["results"].get(section), b["results"].get(section)
        if ra is None and rb is None:
            continue
        fa, fb = flat(ra or {}), flat(rb or {})
        for metric in dict.fromkeys([*fa, *fb]):
            rows.append((section, metric, fa.get(metric), fb.get(metric), _higher_is_better(metric)))
    return rows


def verdict(row: Row, *, tolerance: float = 1e-9) -> str:
    """better / worse / same / missing for one row."""
    _, _, va, vb, higher = row
    if va is None or vb is None:
        return "missing"
    d = vb - va
    if abs(d) <= tolerance:
        return "same"
    return "better" if (d > 0) == higher else "worse"
