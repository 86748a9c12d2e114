"""`kredete evals run` end to end at a small size (CI): a sample of the labelled retrieval queries over the
whole evals KB (indexed through the ingestion pipeline into its own index) in every mode, and the redaction eval;
the report (markdown, JSON, plots) is written and `evals compare` reads it. The permission matrix and latency
sections need a seeded dataset and a server: the e2e suite covers the matrix; full runs: README."""

from __future__ import annotations

import json
import subprocess

import pytest

from evals.harness import KREDETE

pytestmark = pytest.mark.integration


def test_a_small_evals_run_writes_its_report_and_compares(stack, tmp_path):
    out = tmp_path / "report"
    run = subprocess.run([KREDETE, "evals", "run", "--dataset", "evalsci", "--queries", "16", "--only", "retrieval",
                          "--only", "redaction", "--out", str(out)], capture_output=True, text=True, timeout=1500,
                         check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    retrieval = report["results"]["retrieval"]
    # The whole evals KB is indexed (the product's articles and the evals articles), queried in every mode.
    assert retrieval["articles"] >= 74 and retrieval["queries"] == 16
    assert set(retrieval["modes"]) == {"knn", "bm25", "hybrid-minmax", "hybrid-rrf"}
    for mode, m in retrieval["modes"].items():
        assert {"ndcg@10", "recall@5", "mrr"} <= set(m), mode
        assert 0.0 < m["ndcg@10"] <= 1.0, (mode, m)  # the labelled articles are found, not merely listed
    assert set(report["sections"]) == {"retrieval", "redaction"}
    assert report["results"]["redaction"]["variants"]["recognisers"]["micro"]["recall"] > 0.9
    md = (out / "report.md").read_text()
    assert "| hybrid-rrf |" in md and "nDCG@10" in md
    for png in ("retrieval.png", "redaction.png"):
        assert (out / png).stat().st_size > 1000
    # The report compares with itself: every metric present on both sides, nothing changed.
    cmp = subprocess.run([KREDETE, "evals", "compare", str(out), str(out)], capture_output=True, text=True,
                         timeout=120, check=False)
    assert cmp.returncode == 0, cmp.stderr
    assert "hybrid-rrf ndcg@10" in cmp.stdout and "worse" not in cmp.stdout and "missing" not in cmp.stdout
