"""`kredete training export`: scored conversations become redacted, consent-checked examples in the credit store
and, with their dataset card, JSONL in the ML-artifacts bucket; opted-out, erased and low-scored conversations
are left out, staff sessions too; an export that matches nothing still writes its empty dataset and card."""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from evals.harness import KREDETE, http_session, token_for
from tests.integration.traces.conftest import EXEMPT, eventually

pytestmark = pytest.mark.integration

PII_EMAIL = "kofi.boateng@example.com"
PII_PHONE = "+233 24 412 3456"


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([KREDETE, *args], env={**env, "COLUMNS": "250"}, capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.fixture(scope="module")
def ml_bucket(s3_ready, s3_settings, traces_env, traces_settings):
    """The stack's own S3 setup (`kredete s3 setup` under the default bucket prefix, shared with the S3 tests):
    MinIO's remote tiers are server-wide and follow the prefix that set them up first, so a dataset never runs a
    setup of its own. Returns (env, settings) that write to that prefix's ML-artifacts bucket."""
    prefix = s3_settings.s3_bucket_prefix
    return ({**traces_env, "KREDETE_S3_BUCKET_PREFIX": prefix},
            traces_settings.model_copy(update={"s3_bucket_prefix": prefix}))


@pytest.fixture(scope="module")
async def erased_customer(traces_settings):
    """A customer erased as the right to deletion leaves the row (as `stores.postgres.privacy` does): PII columns
    and blind indexes nulled, status closed, deleted_at set."""
    from stores.registry import connect

    stores = await connect(("postgres",), settings=traces_settings)
    try:
        async with stores.postgres.connection() as conn:
            user = await conn.fetchval("SELECT DISTINCT user_id FROM wallets WHERE user_id IS NOT NULL "
                                       "ORDER BY user_id DESC LIMIT 1")
            await conn.execute("UPDATE users SET full_name_enc = NULL, email_enc = NULL, phone_enc = NULL, "
                               "date_of_birth_enc = NULL, address_enc = NULL, email_bidx = NULL, phone_bidx = NULL, "
                               "status = 'closed', deleted_at = coalesce(deleted_at, now()) "
                               "WHERE id = $1", user)
    finally:
        await stores.close()
    return user


async def converse(url: str, settings, user, score: int, *, role: str = "customer", subject: str = EXEMPT) -> str:
    conv = f"train-{uuid.uuid4().hex[:12]}"
    token = token_for(settings, role, user=user, subject=subject) if role == "customer" else token_for(
        settings, role, subject=subject)
    async with http_session(url, token) as s:
        q = await s.call_tool("log_turn", {"conversation_id": conv, "role": "user",
                                           "content": f"I'm Kofi, mail {PII_EMAIL} or call {PII_PHONE}: what are the "
                                                      "fees to send money to Ghana?"})
        assert not q.is_error, q.content
        meta = {"kredete/conversation_id": conv, "kredete/parent_id": q.structured_content["observation_id"]}
        kb = await s.call_tool("search_knowledge", {"query": "fees to send money to Ghana", "k": 3}, meta=meta)
        assert not kb.is_error, kb.content
        a = await s.call_tool("log_turn", {"conversation_id": conv, "role": "assistant", "content": "The fee is shown "
                                           "before you confirm; FX margin applies on conversion."}, meta=meta)
        assert not a.is_error
        fb = await s.call_tool("log_feedback", {"conversation_id": conv, "score": score, "label": "helpful",
                                                "comment": f"thanks, reach me at {PII_EMAIL}"})
        assert not fb.is_error, fb.content
    return conv


async def test_scored_conversations_become_consented_redacted_examples(traces_server, traces_env, traces_settings,
                                                                       customers, credit_store, ml_bucket,
                                                                       erased_customer):
    since = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    good, opted, low = customers[1], customers[2], customers[3]
    assert erased_customer not in (good, opted, low)
    env, s3 = ml_bucket
    out = cli(env, "training", "consent", str(opted), "--opt-out")
    assert out.returncode == 0, out.stderr
    kept = await converse(traces_server, traces_settings, good, 5)
    left_out = {await converse(traces_server, traces_settings, opted, 5),
                await converse(traces_server, traces_settings, erased_customer, 5),
                await converse(traces_server, traces_settings, low, 2),
                await converse(traces_server, traces_settings, None, 5, role="support_agent", subject="agent-7")}
    db = credit_store.db
    convs = [kept, *left_out]

    async def written():
        scored = await db.feedback_signals.count_documents({"conversation_id": {"$in": convs}})
        turns = await db.trace_observations.count_documents({"trace_id": {"$in": convs}, "kind": "turn"})
        return scored == 5 and turns == 10

    assert await eventually(written), "the conversations did not reach the credit store"
    dataset = f"test-{uuid.uuid4().hex[:8]}"
    out = cli(env, "training", "export", "--since", since, "--min-score", "4", "--dataset", dataset, "--json")
    assert out.returncode == 0, out.stderr
    card = json.loads(out.stdout)
    assert card["examples"] == 1 and card["scored_traces"] == 5
    assert card["excluded"] == {"erased or unknown user": 1, "opted out": 1, "score below the minimum": 1,
                                "staff session (no customer consent)": 1}
    assert {"EMAIL", "PHONE"} <= set(card["redacted_at_logging"]) and card["redacted_at_export"] == {}
    # In the credit store: one consented example, the conversation's turns and calls, redacted.
    (example,) = await db.training_data.find({"dataset": dataset}).to_list(None)
    assert example["source_conversation_id"] == kept and example["consent"] is True
    assert example["user_id"] == str(good) and example["label"]["score"] == 5
    assert [m["role"] for m in example["features"]["messages"]] == ["user", "assistant"]
    assert example["features"]["retrievals"][0]["results"]
    # In the ML-artifacts bucket, as the ML pipeline principal: the JSONL and its card; no user id, no PII.
    from stores.objects.buckets import bucket_of
    from stores.objects.principals import objects_for

    objects = objects_for(s3, "ml_pipeline")
    bucket = bucket_of("ml-artifacts", s3.s3_bucket_prefix)
    try:
        jsonl = (await objects.get(bucket, f"training/{dataset}/examples.jsonl")).decode()
        stored_card = json.loads(await objects.get(bucket, f"training/{dataset}/card.json"))
        md = (await objects.get(bucket, f"training/{dataset}/card.md")).decode()
    finally:
        await objects.close()
    rows = [json.loads(line) for line in jsonl.splitlines()]
    assert [r["conversation_id"] for r in rows] == [kept]
    for secret in (PII_EMAIL, PII_PHONE, "Kofi", str(good)):
        assert secret not in jsonl and secret not in json.dumps(example["features"]) + json.dumps(example["label"])
    assert stored_card["examples"] == 1 and "opted out 1" in md
    # Opting back in includes the conversation on the next export of the same dataset (replaced, not appended).
    assert cli(env, "training", "consent", str(opted), "--opt-in").returncode == 0
    again = json.loads(cli(env, "training", "export", "--since", since, "--min-score", "4", "--dataset",
                           dataset, "--json").stdout)
    assert again["examples"] == 2 and await db.training_data.count_documents({"dataset": dataset}) == 2


async def test_an_export_with_no_matching_data_writes_an_empty_dataset_and_its_card(traces_env, traces_settings,
                                                                                     ml_bucket, credit_store):
    env, s3 = ml_bucket
    dataset = f"empty-{uuid.uuid4().hex[:8]}"
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    out = cli(env, "training", "export", "--since", future, "--dataset", dataset, "--json")
    assert out.returncode == 0, out.stderr
    card = json.loads(out.stdout)
    assert card["examples"] == 0 and card["scored_traces"] == 0 and card["splits"] == {}
    from stores.objects.buckets import bucket_of
    from stores.objects.principals import objects_for

    objects = objects_for(s3, "ml_pipeline")
    bucket = bucket_of("ml-artifacts", s3.s3_bucket_prefix)
    try:
        assert await objects.get(bucket, f"training/{dataset}/examples.jsonl") == b""
        assert json.loads(await objects.get(bucket, f"training/{dataset}/card.json"))["dataset"] == dataset
    finally:
        await objects.close()
    assert await credit_store.db.training_data.count_documents({"dataset": dataset}) == 0
