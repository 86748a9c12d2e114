"""The training export's logic with in-memory repositories and object store (pure logic; the real path runs in
tests/integration/traces/test_training_export.py): who is left out and why, the second redaction pass on the
card, stable splits, and an empty export still writing its files."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from uuid import uuid4

from kredete.training.export import export, split_of
from stores.errors import NotFound

SINCE = datetime(2026, 1, 1, tzinfo=UTC)


def tree(trace_id: str, user: str, role: str = "customer", text: str = "hello [EMAIL]") -> SimpleNamespace:
    obs = [{"_id": "1", "kind": "turn", "name": "user", "status": "ok", "output": text, "redactions": {"EMAIL": 1}},
           {"_id": "2", "kind": "tool_call", "name": "get_wallet_balances", "status": "allowed", "arguments": {},
            "output": {"wallets": []}, "output_stored": True},
           {"_id": "3", "kind": "turn", "name": "assistant", "status": "ok", "output": "hi"}]
    return SimpleNamespace(trace={"_id": trace_id, "user_id": user, "principal": {"role": role}}, observations=obs)


class Traces:
    def __init__(self, trees, scores):
        self.trees, self.scores = trees, scores

    async def with_feedback(self, *, since, min_score):
        return {t: s for t, s in self.scores.items()}

    async def tree(self, trace_id):
        if trace_id not in self.trees:
            raise NotFound("no such trace", store="mongo")
        return self.trees[trace_id]


class Training:
    def __init__(self, opted_out=()):
        self.out, self.written = set(opted_out), {}

    async def opted_out(self, users):
        return self.out & set(users)

    async def replace_dataset(self, name, examples):
        self.written[name] = list(examples)
        return len(examples)


class Users:
    def __init__(self, gone=()):
        self.gone = set(gone)

    async def not_live(self, ids):
        return {i for i in ids if str(i) in self.gone}


class Objects:
    def __init__(self):
        self.put_calls = {}

    async def put(self, bucket, key, body, *, content_type):
        self.put_calls[key] = body


def score(n: float) -> dict:
    return {"score": n, "label": "helpful", "created_at": SINCE + timedelta(hours=1)}


async def test_who_is_left_out_and_why():
    a, b, c, d = (str(uuid4()) for _ in range(4))
    trees = {"t-ok": tree("t-ok", a), "t-opted": tree("t-opted", b), "t-erased": tree("t-erased", c),
             "t-staff": tree("t-staff", "00000000-0000-0000-0000-000000000000", role="support_agent"),
             "t-low": tree("t-low", d)}
    scores = {t: [score(5)] for t in trees} | {"t-low": [score(5), score(1)], "t-gone": [score(5)]}
    training, objects = Training(opted_out={b}), Objects()
    card = await export(Traces(trees, scores), training, Users(gone={c}), objects, bucket="ml", since=SINCE,
                        min_score=4, dataset="d1", redact=lambda v: (v, {}))
    assert card.examples == 1 and card.scored_traces == 6
    assert card.excluded == {"erased or unknown user": 1, "no observations": 1, "opted out": 1,
                             "score below the minimum": 1, "staff session (no customer consent)": 1}
    (ex,) = training.written["d1"]
    assert ex.source_conversation_id == "t-ok" and ex.consent and ex.user_id == a
    assert [m["role"] for m in ex.features["messages"]] == ["user", "assistant"]
    assert card.redacted_at_logging == {"EMAIL": 1}
    (row,) = [json.loads(x) for x in objects.put_calls["training/d1/examples.jsonl"].decode().splitlines()]
    assert row["conversation_id"] == "t-ok" and a not in json.dumps(row)


async def test_the_second_redaction_pass_is_reported_on_the_card():
    user = str(uuid4())

    def redact(value):  # finds one leftover email in the features
        return value, ({"EMAIL": 1} if isinstance(value, dict) else {})

    card = await export(Traces({"t": tree("t", user)}, {"t": [score(5)]}), Training(), Users(), Objects(),
                        bucket="ml", since=SINCE, min_score=4, dataset="d2", redact=redact)
    assert card.redacted_at_export == {"EMAIL": 1}


async def test_an_empty_export_writes_an_empty_dataset_and_its_card():
    training, objects = Training(), Objects()
    card = await export(Traces({}, {}), training, Users(), objects, bucket="ml", since=SINCE, min_score=4,
                        dataset="empty", redact=lambda v: (v, {}))
    assert card.examples == 0 and training.written == {"empty": []}
    assert objects.put_calls["training/empty/examples.jsonl"] == b""
    assert json.loads(objects.put_calls["training/empty/card.json"])["examples"] == 0
    assert "examples: 0" in objects.put_calls["training/empty/card.md"].decode()


def test_splits_are_stable_and_roughly_80_10_10():
    ids = [f"conv-{i}" for i in range(3000)]
    first = [split_of(i) for i in ids]
    assert first == [split_of(i) for i in ids]
    share = {s: first.count(s) / len(ids) for s in ("train", "validation", "test")}
    assert 0.76 < share["train"] < 0.84 and 0.07 < share["validation"] < 0.13 and 0.07 < share["test"] < 0.13
