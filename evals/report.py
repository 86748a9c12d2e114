"""Plots (matplotlib, Agg) and the Markdown report of an evals run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def _bars(ax: Any, labels: list[str], series: dict[str, list[float]], *, ylabel: str, ylim: float | None = None,
          fmt: str = "{:.2f}") -> None:
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=name)
        if len(labels) * len(series) <= 24:
            ax.bar_label(bars, labels=[fmt.format(v) for v in values], fontsize=7, padding=1)
    ax.set_xticks(x, labels, rotation=30 if len(labels) > 5 else 0, ha="right" if len(labels) > 5 else "center")
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(0, ylim)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def plot_retrieval(res: dict[str, Any], path: Path) -> None:
    modes = list(res["modes"])
    metrics = [m for m in ("recall@1", "recall@5", "mrr", "ndcg@5", "ndcg@10") if m in res["modes"][modes[0]]]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    _bars(ax, modes, {m: [res["modes"][mode][m] for mode in modes] for m in metrics}, ylabel="score", ylim=1.1)
    ax.set_title(f"Retrieval quality: {res['queries']} labelled queries, {res.get('articles', '?')} KB articles")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_redaction(res: dict[str, Any], path: Path) -> None:
    base = res["variants"]["recognisers"]["per_kind"]
    known = res["variants"]["known_names"]["per_kind"]
    kinds = list(base)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 7.5))
    _bars(ax1, kinds, {m: [base[k][m] for k in kinds] for m in ("precision", "recall", "f1")}, ylabel="score",
          ylim=1.15)
    ax1.set_title(f"Redaction per PiiKind, recognisers only ({res['documents']} docs, {res['gold_spans']} spans)")
    _bars(ax2, kinds, {"recall (recognisers)": [base[k]["recall"] for k in kinds],
                       "recall (with known names)": [known[k]["recall"] for k in kinds]}, ylabel="recall", ylim=1.15)
    fp, hard = res["false_positive_check"], res["false_positive_check_hard"]
    ax2.set_title(f"Recall with known names. False positives: {fp['documents_with_findings']}/{fp['documents']} "
                  f"plain, {hard['documents_with_findings']}/{hard['documents']} hard PII-free docs", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


_OUTCOME = {"allowed": 2, "denied": 0, "allowed_error": 1}


def plot_permissions(res: dict[str, Any], path: Path) -> None:
    roles, tools = res["roles"], res["tools"]
    grid = np.zeros((len(roles), len(tools)))
    for c in res["cells"]:
        grid[roles.index(c["role"]), tools.index(c["tool"])] = -1 if c["mismatch"] else _OUTCOME[c["observed"]]
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap(["#d62728", "#bbbbbb", "#ff9f1c", "#2ca02c"])  # mismatch, denied, error, allowed
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    ax1.imshow(grid, cmap=cmap, vmin=-1, vmax=2, aspect="auto")
    ax1.set_xticks(range(len(tools)), tools, rotation=40, ha="right", fontsize=8)
    ax1.set_yticks(range(len(roles)), roles, fontsize=8)
    for i in range(len(roles)):
        for j in range(len(tools)):
            v = grid[i, j]
            ax1.text(j, i, {-1: "MISMATCH", 0: "denied", 1: "error", 2: "allowed"}[int(v)], ha="center",
                     va="center", fontsize=6)
    ax1.set_title("Role x tool through the MCP server (green allowed, grey denied, red mismatch vs GRANTS)")
    counts = {"allowed": 0, "denied": 0, "allowed_error": 0, "mismatch": len(res["mismatches"])}
    for c in res["cells"]:
        counts[c["observed"]] += 1
    bars = ax2.bar(list(counts), list(counts.values()), color=["#2ca02c", "#bbbbbb", "#ff9f1c", "#d62728"])
    ax2.bar_label(bars, fontsize=8)
    ax2.set_title("outcomes")
    ax2.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_latency(res: dict[str, Any], path: Path) -> None:
    tools = list(res["tools"])
    fig, ax = plt.subplots(figsize=(11, 4.5))
    _bars(ax, tools, {"p50 ms": [res["tools"][t]["p50_ms"] for t in tools],
                      "p95 ms": [res["tools"][t]["p95_ms"] for t in tools]}, ylabel="ms", fmt="{:.0f}")
    ax.set_title(f"Tool latency over streamable HTTP ({res['calls_per_tool']} sequential calls per tool)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


PLOTS = {"retrieval": plot_retrieval, "redaction": plot_redaction, "permissions": plot_permissions,
         "latency": plot_latency}


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Evals report {report['started']}", "",
             f"Dataset: `{report.get('dataset', '-')}`; sections: {', '.join(report['sections'])}.", ""]
    r = report["results"]
    if "retrieval" in r:
        x = r["retrieval"]
        lines += ["## Retrieval quality", "", f"{x['queries']} labelled queries over {x.get('articles', 'the')} KB "
                  f"articles, k={x['k']}, RowScope.none() (public articles only). A document counts at its first "
                  "chunk.", "",
                  "| mode | nDCG@10 | recall@5 | MRR | recall@1 | recall@3 | nDCG@5 | p50 ms |",
                  "|---|---|---|---|---|---|---|---|"]
        for mode, m in x["modes"].items():
            lines.append(f"| {mode} | {m.get('ndcg@10', float('nan')):.3f} | {m['recall@5']:.3f} | {m['mrr']:.3f} | "
                         f"{m['recall@1']:.3f} | {m['recall@3']:.3f} | {m['ndcg@5']:.3f} | "
                         f"{m['latency']['p50_ms']:.1f} |")
        lines += ["", "![retrieval](retrieval.png)", ""]
    if "redaction" in r:
        x = r["redaction"]
        lines += ["## Redaction quality", "", f"{x['documents']} generated documents, {x['gold_spans']} labelled "
                  f"spans (seed {x['seed']}); {x['negative_documents']} PII-free business documents.", ""]
        for variant, v in x["variants"].items():
            lines += [f"### {variant}", "", f"micro P/R/F1 {v['micro']['precision']:.3f} / {v['micro']['recall']:.3f}"
                      f" / {v['micro']['f1']:.3f}; macro F1 {v['macro_f1']:.3f}; masked (any kind) recall "
                      f"{v['masked_recall']:.3f}", "", "| kind | tp | fp | fn | precision | recall | F1 |",
                      "|---|---|---|---|---|---|---|"]
            for k, m in v["per_kind"].items():
                lines.append(f"| {k} | {m['tp']} | {m['fp']} | {m['fn']} | {m['precision']:.3f} | "
                             f"{m['recall']:.3f} | {m['f1']:.3f} |")
            if v["worst_templates"]:
                lines += ["", "Templates with errors:", ""]
                lines += [f"- `{w['template']}`: {w['docs_with_errors']} docs" for w in v["worst_templates"]]
            lines.append("")
        fp = x["false_positive_check"]
        lines += [f"False-positive check: {fp['findings']} findings in {fp['documents_with_findings']} of "
                  f"{fp['documents']} PII-free documents (rate {fp['rate']:.3f}) {fp['by_kind'] or ''}", ""]
        lines += [f"- `{e['text']}` → {e['found']}" for e in fp["examples"]]
        hard = x["false_positive_check_hard"]
        lines += ["", f"Hard negatives (identifier-shaped business numbers): {hard['findings']} findings in "
                  f"{hard['documents_with_findings']} of {hard['documents']} documents (rate {hard['rate']:.3f}) "
                  f"{hard['by_kind'] or ''}", ""]
        lines += [f"- `{t}`: {n} docs" for t, n in hard["by_template"].items()]
        if "free_text" in x:
            ft = x["free_text"]
            lines += ["", "### Free text (memos, dispute notes, bureau letters, chats; no known names)", "",
                      "| kind | tp | fp | fn | precision | recall |", "|---|---|---|---|---|---|"]
            lines += [f"| {k} | {m['tp']} | {m['fp']} | {m['fn']} | {m['precision']:.3f} | {m['recall']:.3f} |"
                      for k, m in ft["per_kind"].items()]
            lines += ["", f"PERSON recall by lexicon: {ft['person_recall_by_lexicon']} "
                      f"(spans: {ft['person_spans_by_lexicon']}); by genre: {ft['person_recall_by_genre']}; "
                      f"{ft['hard_negatives']['documents_with_findings']}/{ft['hard_negatives']['documents']} "
                      "hard negatives flagged.", ""]
            lines += [f"- missed: `{m}`" for m in ft["person_misses"]]
        lines += ["", "![redaction](redaction.png)", ""]
    if "permissions" in r:
        x = r["permissions"]
        lines += ["## Permission matrix", "", f"{len(x['roles'])} roles x {len(x['tools'])} tools through the MCP "
                  "server over HTTP, compared with the grants the tools declare (`agent_tools.registry.GRANTS`): "
                  f"**{len(x['mismatches'])} mismatches**; "
                  f"{len(x['granted_but_failed'])} granted calls failed for another reason; tools listed but not in "
                  f"GRANTS (or the reverse): {x['tools_not_in_grants'] or 'none'}.", ""]
        lines += [f"- mismatch {c['role']} / {c['tool']}: expected {c['expected']}, observed {c['observed']}"
                  for c in x["mismatches"]]
        lines += [f"- granted but failed {c['role']} / {c['tool']}: {c['message']}" for c in x["granted_but_failed"]]
        lines += ["", "![permissions](permissions.png)", ""]
    if "latency" in r:
        x = r["latency"]
        lines += ["## Latency", "", f"Sequential calls per tool over streamable HTTP (client-measured, "
                  f"{x['calls_per_tool']} per tool; credit-coach tools at most 40).", "",
                  "| tool | role | n | p50 ms | p95 ms | errors |", "|---|---|---|---|---|---|"]
        for t, m in x["tools"].items():
            lines.append(f"| {t} | {m['role']} | {m['n']} | {m['p50_ms']:.1f} | {m['p95_ms']:.1f} | {m['errors']} |")
        lines += ["", "![latency](latency.png)", ""]
    return "\n".join(lines) + "\n"
