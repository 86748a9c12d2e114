"""A realistic conversation through the real MCP server becomes one trace: turns, the calls under them, a
retrieval with its ranked results, a refused call, a prompt served, a resource read and a score; only
redacted values are stored, and every observation joins its audit row by request id and argument digest."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from agent_tools.prompts import SUMMARISE_TRANSFERS
from evals.harness import KREDETE, http_session, token_for
from tests.integration.traces.conftest import EXEMPT, eventually

pytestmark = pytest.mark.integration

PII_CARD = "4111 1111 1111 1111"
PII_EMAIL = "ama.mensah@example.com"


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`kredete ...` as an operator runs it (a wide console, so rich does not wrap ids)."""
    return subprocess.run([KREDETE, *args], env={**env, "COLUMNS": "250"}, capture_output=True, text=True,
                          timeout=120, check=False)


async def test_a_conversation_is_one_trace(traces_server, traces_env, traces_settings, customers, credit_store):
    customer = customers[0]
    token = token_for(traces_settings, "customer", user=customer, subject=EXEMPT)
    conv = f"conv-{uuid.uuid4().hex[:12]}"
    async with http_session(traces_server, token) as s:
        user_turn = await s.call_tool("log_turn", {
            "conversation_id": conv, "role": "user",
            "content": f"Hi, I'm Ama Mensah ({PII_EMAIL}), card {PII_CARD}. How long does a transfer to Ghana take?"})
        assert not user_turn.is_error, user_turn.content
        turn_id = user_turn.structured_content["observation_id"]
        assert user_turn.meta["kredete/trace_id"] == conv
        meta = {"kredete/conversation_id": conv, "kredete/parent_id": turn_id}
        kb = await s.call_tool("search_knowledge", {"query": f"transfer to Ghana delivery time, reply to {PII_EMAIL}",
                                                    "k": 3}, meta=meta)
        assert not kb.is_error, kb.content
        assert kb.meta["kredete/trace_id"] == conv
        balances = await s.call_tool("get_wallet_balances", {}, meta=meta)
        assert not balances.is_error
        unknown = await s.call_tool("drop_all_tables_please", {"x": 1}, meta=meta)
        assert unknown.is_error
        answer = await s.call_tool("log_turn", {
            "conversation_id": conv, "role": "assistant", "parent_id": turn_id,
            "content": "Transfers to Ghanaian mobile money usually arrive in minutes."})
        assert not answer.is_error
        fb = await s.call_tool("log_feedback", {"conversation_id": conv, "score": 5, "label": "helpful",
                                                "observation_id": answer.structured_content["observation_id"],
                                                "comment": f"great, thanks! ({PII_EMAIL})"})
        assert not fb.is_error, fb.content
        prompt = await s.get_prompt("summarise_transfers", {"days": "7"})
        assert prompt.messages
        grants = await s.read_resource("kredete://policy/grants")
        assert grants.contents

    db = credit_store.db

    async def all_written():
        n = await db.trace_observations.count_documents({"trace_id": conv})
        return n >= 6 and await db.feedback_signals.count_documents({"conversation_id": conv}) == 1

    assert await eventually(all_written), "the conversation's observations did not reach the credit store"
    obs = await db.trace_observations.find({"trace_id": conv}).to_list(None)
    by_kind = {}
    for o in obs:
        by_kind.setdefault(o["kind"], []).append(o)
    # The tree: the user's turn, under it the calls that answer it and the assistant's turn; the retrieval under
    # search_knowledge with its ranked results.
    turns = {o["name"]: o for o in by_kind["turn"]}
    assert set(turns) == {"user", "assistant"}
    assert turns["user"]["_id"] == turn_id and turns["user"]["parent_id"] is None
    assert turns["assistant"]["parent_id"] == turn_id
    calls = {o["name"]: o for o in by_kind["tool_call"]}
    assert {"search_knowledge", "get_wallet_balances", "unknown"} <= set(calls)
    assert all(calls[n]["parent_id"] == turn_id for n in ("search_knowledge", "get_wallet_balances", "unknown"))
    (retrieval,) = by_kind["retrieval"]
    assert retrieval["parent_id"] == calls["search_knowledge"]["_id"]
    assert retrieval["results"] and [r["rank"] for r in retrieval["results"]] == list(
        range(1, len(retrieval["results"]) + 1))
    assert [r["id"] for r in retrieval["results"]] == [p["citation"] for p in kb.structured_content["passages"]]
    # Principal: pseudonymous for a customer; never the user id or the token subject in a value.
    assert {o["principal"]["role"] for o in obs} == {"customer"}
    assert all(o["principal"]["id"].startswith("cust_") for o in obs)
    stored = json.dumps([{k: v for k, v in o.items() if k != "user_id"} for o in obs], default=str)
    for secret in (PII_CARD, PII_EMAIL, "Ama Mensah", str(customer), EXEMPT, "drop_all_tables_please"):
        assert secret not in stored, f"{secret!r} reached the trace store"
    # Redacted findings per kind: the user's turn held a card, an email and a name.
    assert {"CARD_NUMBER", "EMAIL", "PERSON"} <= set(turns["user"]["redactions"])
    assert calls["search_knowledge"]["redactions"].get("EMAIL", 0) >= 1
    assert calls["unknown"]["status"] == "denied" and calls["unknown"]["requested_name_digest"]
    assert calls["get_wallet_balances"]["output_stored"] and calls["get_wallet_balances"]["tokens"] > 0
    assert all(o["latency_ms"] > 0 for o in by_kind["tool_call"])
    # Each call's observation joins its audit row: same request id, same keyed argument digest.
    from stores.registry import connect

    stores = await connect(("postgres",), settings=traces_settings)
    try:
        async with stores.postgres.connection() as conn:
            rows = await conn.fetch("SELECT request_id, args_digest, action FROM audit_logs WHERE request_id = ANY($1)",
                                    [o["request_id"] for o in by_kind["tool_call"]])
    finally:
        await stores.close()
    audit = {r["request_id"]: r for r in rows}
    for o in by_kind["tool_call"]:
        assert audit[o["request_id"]]["args_digest"] == o["args_digest"], o["name"]
    # The score is on the assistant's turn.
    (score,) = await db.feedback_signals.find({"conversation_id": conv}).to_list(None)
    assert score["observation_id"] == turns["assistant"]["_id"] and score["score"] == 5
    assert PII_EMAIL not in score["comment"]
    # The retrieval is a model prediction too: its ranked results with their scores.
    pred = await eventually(lambda: db.model_predictions.find_one({"inputs.observation_id": retrieval["_id"]}))
    assert pred and [r["id"] for r in pred["outputs"]["ranked"]] == [r["id"] for r in retrieval["results"]]
    assert PII_EMAIL not in json.dumps(pred["inputs"], default=str)
    # prompts/get: prompt_history with name, version and template hash; the version's template registered.
    history = await eventually(lambda: db.prompt_history.find_one({"name": "summarise_transfers"}))
    assert history["version"] == str(SUMMARISE_TRANSFERS.version)
    assert history["template_sha256"] == SUMMARISE_TRANSFERS.sha256
    version = await db.prompt_versions.find_one({"_id": f"summarise_transfers@{SUMMARISE_TRANSFERS.version}"})
    assert version and version["template_sha256"] == SUMMARISE_TRANSFERS.sha256
    served = await eventually(lambda: db.trace_observations.find_one({"kind": "prompt", "name": "summarise_transfers"}))
    assert served["metadata"] == {"prompt_version": "1", "template_sha256": SUMMARISE_TRANSFERS.sha256}
    assert await db.trace_observations.find_one({"kind": "resource_read", "name": "kredete://policy/grants"})

    # `kredete traces show` renders the tree, redacted values only.
    out = cli(traces_env, "traces", "show", conv)
    assert out.returncode == 0, out.stderr
    for text in ("turn user", "tool_call search_knowledge", "retrieval", "score 5", "unknown"):
        assert text in out.stdout
    for secret in (PII_CARD, PII_EMAIL, str(customer)):
        assert secret not in out.stdout
    listed = cli(traces_env, "traces", "list", "--limit", "50")
    assert listed.returncode == 0 and conv in listed.stdout
