"""`evals compare`: deltas between two reports, which way each went, and metrics present on one side only."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from evals.compare import compare, verdict


def report(ndcg: float, p50: float, mismatches: int, *, extra_mode: bool = False) -> dict:
    modes = {"hybrid-rrf": {"ndcg@10": ndcg, "recall@5": 0.9, "mrr": 0.8, "latency": {"p50_ms": p50}}}
    if extra_mode:
        modes["bm25"] = {"ndcg@10": 0.5, "recall@5": 0.6, "mrr": 0.4, "latency": {"p50_ms": 3.0}}
    return {"started": "x", "results": {"retrieval": {"modes": modes},
                                        "permissions": {"mismatches": [{}] * mismatches, "granted_but_failed": []}}}


def test_deltas_say_which_way_each_metric_went():
    rows = {(s, m): r for r in compare(report(0.80, 20.0, 1), report(0.86, 25.0, 0, extra_mode=True))
            for s, m in [r[:2]]}
    assert verdict(rows["retrieval", "hybrid-rrf ndcg@10"]) == "better"
    assert verdict(rows["retrieval", "hybrid-rrf p50 ms"]) == "worse"  # latency: lower is better
    assert verdict(rows["retrieval", "hybrid-rrf recall@5"]) == "same"
    assert verdict(rows["permissions", "mismatches"]) == "better"
    assert rows["retrieval", "bm25 ndcg@10"][2] is None and verdict(rows["retrieval", "bm25 ndcg@10"]) == "missing"


def test_the_cli_prints_the_deltas(tmp_path):
    from kredete.cli import app

    for name, ndcg in (("a", 0.70), ("b", 0.88)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps(report(ndcg, 20.0, 0)))
    out = CliRunner().invoke(app, ["evals", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--changed"])
    assert out.exit_code == 0, out.output
    assert "hybrid-rrf ndcg@10" in out.output and "+0.18" in out.output and "better" in out.output
    assert "recall@5" not in out.output  # unchanged, and --changed hides it
    missing = CliRunner().invoke(app, ["evals", "compare", str(tmp_path / "a"), str(tmp_path / "nope")])
    assert missing.exit_code != 0
