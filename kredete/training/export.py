"""Conversations that carry feedback become redacted, consent-checked training examples.

A trace qualifies when it was scored since `since` and its lowest score since then is at least `min_score` (a
conversation also rated harmful is not a positive example). Only customers' conversations are exported, and
only when the customer neither opted out (`kredete training consent`) nor was erased (or is unknown to the
ledger); staff sessions have no customer consent to check and are left out. Everything in a trace was redacted
with mask-everything when it was logged; the export redacts it again and reports what that second pass found
(expected: nothing). Each export writes the dataset to `training_data` (replacing an earlier export of the same
dataset) and, as the ML pipeline's S3 principal, `training/<dataset>/examples.jsonl` with `card.json` and
`card.md` to the ML-artifacts bucket. No matching data still writes an empty dataset with its card.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from stores.mongo.documents import TrainingExample

SPLITS = (("train", 80), ("validation", 10), ("test", 10))


def split_of(trace_id: str) -> str:
    """A stable split per conversation (the same trace lands in the same split on every export)."""
    bucket = int.from_bytes(hashlib.sha256(trace_id.encode()).digest()[:4], "big") % 100
    edge = 0
    for name, share in SPLITS:
        edge += share
        if bucket < edge:
            return name
    return "train"


def dataset_name(since: datetime, min_score: float) -> str:
    return f"conversations-since-{since:%Y%m%dT%H%M}-min{min_score:g}".replace("-min-", "-minneg")


@dataclass
class Card:
    """What an export wrote and why: counts, the filters used, the redaction summary."""

    dataset: str
    since: str
    min_score: float
    created_at: str
    scored_traces: int = 0
    examples: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    tool_calls: int = 0
    retrievals: int = 0
    #: Findings masked when the conversations were logged, per PII kind.
    redacted_at_logging: dict[str, int] = field(default_factory=dict)
    #: Findings the export's second redaction pass still found (and masked), per kind: expected none.
    redacted_at_export: dict[str, int] = field(default_factory=dict)
    prompt_versions: list[str] = field(default_factory=list)
    location: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def markdown(self) -> str:
        d = self
        lines = [f"# Dataset card: {d.dataset}", "", f"Created {d.created_at} by `kredete training export`.", "",
                 "## Filters", "", f"- scored since {d.since}",
                 f"- lowest score of the conversation >= {d.min_score:g}",
                 "- customers' conversations only; opted-out, erased and unknown users excluded", "",
                 "## Counts", "", f"- conversations scored in the window: {d.scored_traces}",
                 f"- examples: {d.examples} ({', '.join(f'{k} {v}' for k, v in d.splits.items()) or 'none'})",
                 f"- excluded: {', '.join(f'{k} {v}' for k, v in d.excluded.items()) or 'none'}",
                 f"- messages {d.messages}, tool calls {d.tool_calls}, retrievals {d.retrievals}", "",
                 "## Redaction", "",
                 "- masked when logged: " + (", ".join(f"{k} {v}" for k, v in sorted(d.redacted_at_logging.items()))
                                             or "none"),
                 "- found again by the export's second pass: " + (
                     ", ".join(f"{k} {v}" for k, v in sorted(d.redacted_at_export.items())) or "none"), "",
                 f"Prompt versions seen: {', '.join(d.prompt_versions) or 'none'}.", ""]
        return "\n".join(lines)


def _add(into: dict[str, int], counts: dict[str, int]) -> None:
    for k, n in counts.items():
        into[str(k)] = into.get(str(k), 0) + int(n)


def example_of(tree: Any, scores: list[dict[str, Any]], redact: Any, card: Card) -> tuple[dict, dict]:
    """(features, label) of one conversation; values redacted again (what that finds goes to the card)."""
    messages, calls, retrievals, prompts = [], [], [], []
    for o in tree.observations:
        _add(card.redacted_at_logging, o.get("redactions") or {})
        if o["kind"] == "turn":
            messages.append({"role": o["name"], "content": o.get("output") or ""})
        elif o["kind"] == "retrieval":
            retrievals.append({"query": (o.get("arguments") or {}).get("query"), "mode": o["name"],
                               "results": [r["id"] for r in o.get("results") or []]})
        elif o["kind"] == "prompt":
            meta = o.get("metadata") or {}
            prompts.append(f"{o['name']}@{meta.get('prompt_version', '?')}")
        else:
            calls.append({"kind": o["kind"], "name": o["name"], "status": o["status"],
                          "arguments": o.get("arguments") or {},
                          "output": o.get("output") if o.get("output_stored") else None})
    features = {"messages": messages, "tool_calls": calls, "retrievals": retrievals, "prompts": prompts}
    features, found = redact(features)
    _add(card.redacted_at_export, found)
    values = [float(s["score"]) for s in scores]
    comments = [s["comment"] for s in scores if s.get("comment")]
    label = {"score": min(values), "mean_score": round(sum(values) / len(values), 3),
             "labels": sorted({s["label"] for s in scores if s.get("label")}), "scores": len(values)}
    if comments:
        label["comments"], found = redact(comments)
        _add(card.redacted_at_export, found)
    card.messages += len(messages)
    card.tool_calls += len(calls)
    card.retrievals += len(retrievals)
    card.prompt_versions = sorted(set(card.prompt_versions) | set(prompts))
    return features, label


async def export(traces: Any, training: Any, users: Any, objects: Any, *, bucket: str, since: datetime,
                 min_score: float, dataset: str | None = None, redact: Any = None) -> Card:
    """Run one export (see the module docstring); the dataset card of what was written."""
    if redact is None:
        from guards.redaction import redact_value as redact
    name = dataset or dataset_name(since, min_score)
    card = Card(dataset=name, since=since.isoformat(), min_score=min_score,
                created_at=datetime.now(UTC).isoformat(timespec="seconds"))
    scored = await traces.with_feedback(since=since, min_score=-1e9)
    card.scored_traces = len(scored)
    excluded: Counter[str] = Counter()
    candidates = {}
    for trace_id, scores in scored.items():
        if min(float(s["score"]) for s in scores) < min_score:
            excluded["score below the minimum"] += 1
            continue
        candidates[trace_id] = scores
    trees = {}
    from stores.errors import NotFound

    for trace_id in candidates:
        try:
            tree = await traces.tree(trace_id)
        except NotFound:  # scored, but its observations expired or were never written
            excluded["no observations"] += 1
            continue
        if (tree.trace.get("principal") or {}).get("role") != "customer":
            excluded["staff session (no customer consent)"] += 1
            continue
        trees[trace_id] = tree
    user_of = {t: str(tree.trace.get("user_id")) for t, tree in trees.items()}
    opted_out = await training.opted_out(set(user_of.values()))
    not_live = {str(u) for u in await users.not_live([UUID(u) for u in set(user_of.values()) - opted_out])}
    examples: list[TrainingExample] = []
    lines: list[str] = []
    for trace_id, tree in trees.items():
        user = user_of[trace_id]
        if user in opted_out:
            excluded["opted out"] += 1
            continue
        if user in not_live:
            excluded["erased or unknown user"] += 1
            continue
        features, label = example_of(tree, candidates[trace_id], redact, card)
        split = split_of(trace_id)
        card.splits[split] = card.splits.get(split, 0) + 1
        examples.append(TrainingExample(user_id=user, dataset=name, split=split, features=features, label=label,
                                        source_conversation_id=trace_id, consent=True))
        # The JSONL names the conversation, never the user: the user id stays in the credit store.
        lines.append(json.dumps({"conversation_id": trace_id, "split": split, **features, "label": label},
                                default=str, sort_keys=True))
    card.examples = len(examples)
    card.excluded = dict(sorted(excluded.items()))
    await training.replace_dataset(name, examples)
    prefix = f"training/{name}"
    card.location = {"bucket": bucket, "examples": f"{prefix}/examples.jsonl", "card": f"{prefix}/card.json",
                     "collection": "training_data"}
    body = ("\n".join(lines) + "\n").encode() if lines else b""
    await objects.put(bucket, f"{prefix}/examples.jsonl", body, content_type="application/x-ndjson")
    await objects.put(bucket, f"{prefix}/card.json", json.dumps(card.as_dict(), indent=2).encode(),
                      content_type="application/json")
    await objects.put(bucket, f"{prefix}/card.md", card.markdown().encode(), content_type="text/markdown")
    return card
