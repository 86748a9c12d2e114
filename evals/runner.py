"""Runs the selected eval sections and writes evals/reports/<timestamp>/ (report.md, report.json, PNGs).

Each finished section is saved as `<section>.json` in the report folder at once, so an interrupted run can
be resumed with `--resume <folder>`: finished sections are loaded, the rest run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from evals.harness import Dataset, http_server

SECTIONS = ("retrieval", "redaction", "permissions", "latency")
REPORTS = Path(__file__).parent / "reports"
#: Sections that need the seeded dataset and its server (retrieval has its own KB index, `evals.kb_index`).
NEEDS_DATASET = {"permissions", "latency"}


def dataset(users: int = 60, name: str = "evals") -> Dataset:
    return Dataset(name, users=users, seed=7, ingest=("kb",))


def run(only: Iterable[str] | None = None, *, resume: Path | None = None, users: int = 60, latency_calls: int = 40,
        fresh: bool = False, console: Console | None = None, queries: int | None = None,
        out: Path | None = None, dataset_name: str = "evals") -> Path:
    """`queries` keeps a sample of the labelled retrieval queries (the small CI run); `out` is the report folder
    (default `evals/reports/<timestamp>/`, committed for full runs); `dataset_name` keeps a small run's data
    apart from the full run's (`kredete_<name>` databases, `kredete-<name>` indexes)."""
    console = console or Console(stderr=True)
    sections = [s for s in SECTIONS if not only or s in set(only)]
    out = resume or out or REPORTS / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for s in sections:
        if (out / f"{s}.json").exists():
            results[s] = json.loads((out / f"{s}.json").read_text())
            console.print(f"[dim]{s}: loaded from {out / f'{s}.json'}[/]")
    todo = [s for s in sections if s not in results]
    ds = dataset(users, dataset_name)
    if NEEDS_DATASET & set(todo):
        with console.status("preparing the evals dataset (migrate, seed, ingest kb on first use)"):
            ds.prepare(fresh=fresh, log=lambda m: console.log(m))
    settings = ds.settings()
    timings: dict[str, float] = {}

    def save(name: str, value: dict[str, Any], started: float) -> None:
        timings[name] = round(time.perf_counter() - started, 1)
        value["seconds"] = timings[name]
        results[name] = value
        (out / f"{name}.json").write_text(json.dumps(value, indent=2, default=str) + "\n")

    with Progress(TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        if "redaction" in todo:
            from evals import redaction_eval

            task = progress.add_task("redaction", total=redaction_eval.steps())
            t = time.perf_counter()
            save("redaction", redaction_eval.run(progress=lambda: progress.advance(task)), t)
        if "retrieval" in todo:
            from evals import retrieval_eval

            task = progress.add_task("retrieval", total=retrieval_eval.steps(queries))
            t = time.perf_counter()
            save("retrieval", asyncio.run(retrieval_eval.run(settings, progress=lambda: progress.advance(task),
                                                             limit=queries)), t)
        server_sections = [s for s in ("permissions", "latency") if s in todo]
        if server_sections:
            from evals import server_eval

            facts = asyncio.run(server_eval.find_facts(settings))
            with http_server(ds.env, log_name="evals-http-server") as url:
                if "permissions" in server_sections:
                    from agent_tools.registry import GRANTS
                    from guards.principal import Role

                    task = progress.add_task("permissions", total=len(Role) * len(GRANTS))
                    t = time.perf_counter()
                    save("permissions", asyncio.run(server_eval.permission_matrix(
                        url, settings, facts, progress=lambda: progress.advance(task))), t)
                if "latency" in server_sections:
                    task = progress.add_task("latency", total=len(server_eval.latency_roles()) * latency_calls)
                    t = time.perf_counter()
                    save("latency", asyncio.run(server_eval.latency(
                        url, settings, facts, latency_calls, progress=lambda: progress.advance(task))), t)

    from evals.report import PLOTS, markdown

    for name, value in results.items():
        PLOTS[name](value, out / f"{name}.png")
    report = {"started": out.name, "dataset": f"{ds.db} / {ds.index_prefix} ({ds.users} users)",
              "sections": [s for s in sections if s in results], "results": results}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "report.md").write_text(markdown(report))
    summary(report, console)
    console.print(f"report: {out / 'report.md'}")
    return out


def summary(report: dict[str, Any], console: Console) -> None:
    t = Table(title="evals summary")
    t.add_column("section")
    t.add_column("result")
    r = report["results"]
    if "retrieval" in r:
        for mode, m in r["retrieval"]["modes"].items():
            t.add_row(f"retrieval {mode}", f"nDCG@10 {m.get('ndcg@10', float('nan')):.3f}  recall@5 "
                                           f"{m['recall@5']:.3f}  MRR {m['mrr']:.3f}")
    if "redaction" in r:
        for variant, v in r["redaction"]["variants"].items():
            t.add_row(f"redaction {variant}", f"micro P {v['micro']['precision']:.3f}  R {v['micro']['recall']:.3f}  "
                                              f"F1 {v['micro']['f1']:.3f}  masked recall {v['masked_recall']:.3f}")
        fp = r["redaction"]["false_positive_check"]
        hard = r["redaction"]["false_positive_check_hard"]
        t.add_row("redaction false positives", f"{fp['documents_with_findings']}/{fp['documents']} plain PII-free "
                                               f"docs, {hard['documents_with_findings']}/{hard['documents']} hard ones "
                                               f"{hard['by_kind']}")
        if "free_text" in r["redaction"]:
            ft = r["redaction"]["free_text"]
            pk, neg = ft["per_kind"].get("PERSON", {}), ft["hard_negatives"]
            oov = ft["person_recall_by_lexicon"]["out_of_lexicon"]
            t.add_row("redaction free text", f"PERSON P {pk.get('precision', 0):.3f}  R {pk.get('recall', 0):.3f} "
                                             f"(out of lexicon R {oov:.3f}); {neg['documents_with_findings']}/"
                                             f"{neg['documents']} hard negatives flagged")
    if "permissions" in r:
        p = r["permissions"]
        t.add_row("permission matrix", f"{len(p['cells'])} cells, {len(p['mismatches'])} mismatches vs GRANTS, "
                                       f"{len(p['granted_but_failed'])} granted-but-failed")
    if "latency" in r:
        worst = max(r["latency"]["tools"].items(), key=lambda kv: kv[1]["p95_ms"])
        p50s = sorted(m["p50_ms"] for m in r["latency"]["tools"].values())
        t.add_row("latency", f"p50 {p50s[0]:.0f}-{p50s[-1]:.0f} ms across tools; worst p95 {worst[1]['p95_ms']:.0f} ms "
                             f"({worst[0]})")
    console.print(t)
