"""The trace recorder's logic with an in-memory sink and owners (pure logic; the real path runs in
tests/integration/traces): bounded queue, drops counted, another principal's trace refused, an unreachable
owner store keeps observations queued, stored values redacted, argument digests equal to the audit row's."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from uuid import uuid4

from guards.call import args_digest, new_call_state
from guards.principal import Principal, Role
from guards.tracing import META_CONVERSATION, TraceRecorder, owner_of
from stores.mongo import collections as names

KEY = b"k" * 32


class Sink:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict]] = []

    async def record(self, collection, model, fields):
        model.model_validate(fields)  # what the AI logger validates
        self.records.append((collection, dict(fields)))
        return fields.get("_id")

    async def record_many(self, items):
        for _, model, _fields in items:
            model.model_validate(_fields)  # all validated before any is kept, as the AI logger does
        return [await self.record(*item) for item in items]

    async def log_prompt(self, *a, **k):
        return None

    async def log_prediction(self, *a, **k):
        self.records.append(("model_predictions", {"args": a}))
        return None

    def observations(self) -> list[dict]:
        return [f for c, f in self.records if c == names.TRACE_OBSERVATIONS]


class Owners:
    def __init__(self) -> None:
        self.owner: dict[str, str] = {}
        self.down = False

    async def claim(self, conversation_id, owner, *, user_id, new=False):
        if self.down:
            raise ConnectionError("credit store down")
        return self.owner.setdefault(conversation_id, owner) == owner


def customer() -> Principal:
    return Principal(subject=f"user:{uuid4()}", role=Role.CUSTOMER, user_id=uuid4(), token_id="t", expires_at=2**31,
                     issuer="test")


def ctx(meta=None):
    return SimpleNamespace(meta=meta or {}, session=SimpleNamespace(_connection=SimpleNamespace(state={})))


def end(rec: TraceRecorder, obs, who: Principal, arguments: dict, result=None):
    """End a `get_wallet_balances` call begun as `obs`; its call state."""
    state = new_call_state("get_wallet_balances", arguments)
    state.principal = who
    rec.end(obs, state, result)
    return state


def call(rec: TraceRecorder, who: Principal, arguments: dict, *, meta=None, c=None, result=None):
    obs = rec.begin(c or ctx(meta), "tool_call")
    return obs, end(rec, obs, who, arguments, result)


async def test_a_full_queue_drops_and_counts_without_failing_the_call():
    rec = TraceRecorder(Sink(), digest_key=KEY, queue_size=3)
    who = customer()
    for _ in range(5):
        call(rec, who, {})
    assert len(rec._queue) == 3 and rec.dropped == {"queue_full": 2}


async def test_stored_values_are_redacted_and_digested_like_the_audit_row():
    sink = Sink()
    rec = TraceRecorder(sink, digest_key=KEY)
    who = customer()
    args = {"note": "card 4111 1111 1111 1111, mail ama@example.com"}
    result = {"structuredContent": {"user_id": str(who.user_id), "rows": [{"memo": "call me on +234 803 123 4567"}]},
              "content": []}
    call(rec, who, args, result=result)
    await rec.start()
    assert await rec.flush(5)
    await rec.stop()
    (obs,) = sink.observations()
    stored = json.dumps(obs, default=str)
    for secret in ("4111 1111 1111 1111", "ama@example.com", "803 123 4567", str(who.user_id), who.subject):
        assert secret not in stored.replace(f'"user_id": "{who.user_id}"', "")
    assert obs["args_digest"] == args_digest(args, KEY)
    assert {"CARD_NUMBER", "EMAIL", "PHONE"} <= set(obs["redactions"])
    assert obs["principal"]["id"].startswith("cust_") and obs["output_stored"]
    assert obs["output"]["user_id"] == obs["principal"]["id"]  # the customer's own id: their pseudonym


async def test_another_principals_trace_is_refused_and_logged_under_the_callers_session():
    sink, owners = Sink(), Owners()
    rec = TraceRecorder(sink, digest_key=KEY, owners=owners)
    alice, mallory = customer(), customer()
    owners.owner["conv-alice"] = owner_of(alice)
    call(rec, alice, {}, meta={META_CONVERSATION: "conv-alice"})
    obs_m, _ = call(rec, mallory, {}, meta={META_CONVERSATION: "conv-alice"})
    await rec.start()
    assert await rec.flush(5)
    await rec.stop()
    by_id = {o["_id"]: o for o in sink.observations()}
    mine = by_id[obs_m.id]
    assert mine["trace_id"] != "conv-alice" and mine["metadata"]["refused_trace"] is True
    alices = next(o for o in by_id.values() if o["trace_id"] == "conv-alice")
    assert alices["principal"]["id"] != mine["principal"]["id"]
    assert rec.refused == 1
    # Known now: the next call naming it is logged under the session trace at once.
    obs_2, _ = call(rec, mallory, {}, meta={META_CONVERSATION: "conv-alice"})
    assert obs_2.trace_id == obs_2.session_trace and rec.refused == 2


async def test_an_unreachable_owner_store_keeps_observations_queued_until_it_is_back():
    sink, owners = Sink(), Owners()
    owners.down = True
    rec = TraceRecorder(sink, digest_key=KEY, owners=owners, queue_size=100)
    who = customer()
    for _ in range(4):
        call(rec, who, {})
    await rec.start()
    await asyncio.sleep(0.3)
    assert sink.observations() == [] and len(rec._queue) == 4
    owners.down = False
    assert await rec.flush(10)
    await rec.stop()
    assert len(sink.observations()) == 4 and rec.dropped == {}


async def test_a_backlog_is_written_while_calls_stay_in_flight():
    """Under a load that never leaves the loop without a call, the queue does not grow until it drops: past
    `backlog` observations the recorder stops waiting for a moment without calls."""
    sink = Sink()
    rec = await TraceRecorder(sink, digest_key=KEY, idle_wait_s=60, backlog=2).start()
    who = customer()
    busy = rec.begin(ctx(), "tool_call")  # a call that stays in flight throughout
    for _ in range(4):
        call(rec, who, {"n": 1})
    for _ in range(2000):  # the first two leave a short queue behind (which waits for no call in flight)
        if len(sink.observations()) >= 2:
            break
        await asyncio.sleep(0.01)
    assert len(sink.observations()) >= 2 and len(rec._queue) <= 2 and not rec.dropped
    end(rec, busy, who, {})
    await rec.stop()
    assert len(sink.observations()) == 5


async def test_stepwise_documents_equal_the_documents_at_once():
    sink = Sink()
    rec = await TraceRecorder(sink, digest_key=KEY).start()
    who = customer()
    result = {"structuredContent": {"note": "call Ama Mensah on 0803 123 4567", "status": "completed"}}
    obs, _ = call(rec, who, {"q": "ama@example.com"}, result=result)
    await rec.stop()
    (written,) = sink.observations()
    rec._traces_written.clear()
    again = dict(rec.documents(obs)[-1][1])
    for volatile in ("created_at", "expires_at"):
        written.pop(volatile), again.pop(volatile)
    assert written == again and "Ama" not in json.dumps(written["output"])


async def test_a_session_trace_minted_for_a_call_is_claimed_as_new():
    """A session trace id the recorder just minted is claimed with `new=True` (insert first, one round trip);
    a conversation the client named is looked up as before."""
    owners, seen = Owners(), []
    plain = owners.claim

    async def claim(conversation_id, owner, *, user_id, new=False):
        seen.append((conversation_id, new))
        return await plain(conversation_id, owner, user_id=user_id, new=new)

    owners.claim = claim
    rec = await TraceRecorder(Sink(), digest_key=KEY, owners=owners).start()
    who = customer()
    session = ctx()
    first, _ = call(rec, who, {"n": 1}, c=session)
    call(rec, who, {"n": 2}, c=session)  # the same session: its trace is claimed once
    call(rec, who, {"n": 3}, meta={META_CONVERSATION: "conv-1"})
    await rec.stop()
    assert seen == [(first.session_trace, True), ("conv-1", False)]


async def test_flush_writes_what_is_queued_while_a_call_stays_in_flight():
    """While the queue is short each step waits for a moment without calls (up to `idle_wait_s`); a flush does
    not: what is queued is handed to the logger though a call stays in flight."""
    sink = Sink()
    rec = await TraceRecorder(sink, digest_key=KEY, idle_wait_s=600).start()
    who = customer()
    busy = rec.begin(ctx(), "tool_call")
    for n in range(2):
        call(rec, who, {"n": n})
    assert await rec.flush(30)
    assert len(sink.observations()) == 2
    end(rec, busy, who, {})
    await rec.stop()
    assert len(sink.observations()) == 3


async def test_over_http_a_tokens_requests_share_one_session_trace_claimed_and_written_once():
    """Stateless HTTP: every request is a new session (a fresh session state), so the session trace is the
    bearer token's: the same id for each of its requests, claimed and written once per process; another token or
    another principal gets another trace. Over stdio each session still mints its own."""
    owners, seen = Owners(), []
    plain = owners.claim

    async def claim(conversation_id, owner, *, user_id, new=False):
        seen.append(conversation_id)
        return await plain(conversation_id, owner, user_id=user_id, new=new)

    owners.claim = claim
    sink = Sink()
    rec = await TraceRecorder(sink, digest_key=KEY, owners=owners, transport="http").start()
    who = customer()
    other_token = Principal(subject=who.subject, role=who.role, user_id=who.user_id, token_id="t2",
                            expires_at=2**31, issuer="test")
    first = [call(rec, who, {"n": i})[0] for i in range(3)]  # three requests, three fresh sessions
    second, _ = call(rec, other_token, {"n": 3})
    third, _ = call(rec, customer(), {"n": 4})
    assert await rec.flush(5)
    await rec.stop()
    assert len({o.trace_id for o in first}) == 1 and first[0].trace_id.startswith("mcp-")
    assert len({first[0].trace_id, second.trace_id, third.trace_id}) == 3
    assert seen == [first[0].trace_id, second.trace_id, third.trace_id]  # one claim per trace
    traces = [f["_id"] for c, f in sink.records if c == names.TRACES]
    assert traces == [first[0].trace_id, second.trace_id, third.trace_id]
    assert [o["trace_id"] for o in sink.observations()] == [first[0].trace_id] * 3 + [second.trace_id,
                                                                                         third.trace_id]
    # A later process (or another worker) names the same trace for the token.
    again = TraceRecorder(Sink(), digest_key=KEY, owners=Owners(), transport="http")
    assert call(again, who, {})[0].trace_id == first[0].trace_id
    stdio = TraceRecorder(Sink(), digest_key=KEY, owners=Owners(), transport="stdio")
    assert call(stdio, who, {})[0].trace_id != call(stdio, who, {})[0].trace_id


async def test_observations_built_together_share_one_commit_and_an_invalid_one_is_dropped_alone():
    """Observations built while others wait are committed to the AI logger together (one local-queue
    transaction); when the logger refuses that commit, each goes on its own, so only the invalid one is lost."""

    class Refusing(Sink):
        def __init__(self) -> None:
            super().__init__()
            self.commits: list[int] = []

        async def record_many(self, items):
            self.commits.append(len(items))
            if any(f.get("arguments", {}).get("n") == "bad" for _, _, f in items):
                raise ValueError("invalid document")  # the logger validates all before queuing any
            return await super().record_many(items)

    sink = Refusing()
    rec = TraceRecorder(sink, digest_key=KEY, linger_s=5)
    who, session = customer(), ctx()
    for i in range(5):
        call(rec, who, {"n": i}, c=session)
    await rec.start()
    assert await rec.flush(5)  # a flush does not wait for the linger
    assert sink.commits == [6] and len(sink.observations()) == 5  # the trace and 5 observations, one commit
    for n in (5, "bad", 7):
        call(rec, who, {"n": n}, c=session)
    assert await rec.flush(5)
    await rec.stop()
    assert sink.commits == [6, 3, 1, 1, 1]
    assert [o["arguments"]["n"] for o in sink.observations()] == [0, 1, 2, 3, 4, 5, 7]
    assert rec.dropped == {"invalid": 1} and rec.written == 7


def agent() -> Principal:
    return Principal(subject="agent-7", role=Role.SUPPORT_AGENT, user_id=None, token_id="t", expires_at=2**31,
                     issuer="test")


async def _stored(who: Principal, output: dict, redactions: dict[str, int], *, kind: str = "tool_call",
                  decision: str = "allowed", unmasked: bool = False) -> dict:
    """The observation stored for one call of `kind` by `who` whose output guard found `redactions`."""
    sink = Sink()
    rec = TraceRecorder(sink, digest_key=KEY)
    obs = rec.begin(ctx(), kind)
    state = new_call_state("get_transaction", {"transaction_id": str(uuid4())})
    state.principal, state.decision, state.redactions = who, decision, dict(redactions)
    state.unmasked = unmasked
    rec.end(obs, state, {"structuredContent": output, "content": []} if kind == "tool_call" else
            {"contents": [{"uri": "kredete://x", "text": json.dumps(output)}]})
    await rec.start()
    assert await rec.flush(5)
    await rec.stop()
    (stored,) = sink.observations()
    return stored


async def test_a_staff_output_the_guard_masked_in_full_is_stored_as_it_left():
    """Every finding masked on the way out (no kind the role sees in part): stored as the caller got it, the
    findings counted once, the «data» marks kept (a second mask-everything pass turned them into a bare mask)."""
    left = {"counterparty_name": "«data»[PERSON]«/data»", "status": "completed"}
    stored = await _stored(agent(), left, {"PERSON": 1})
    assert stored["output"] == left and stored["redactions"] == {"PERSON": 1}


async def test_an_output_shown_in_part_a_customers_a_refusals_and_a_resources_are_redacted_again():
    """What the role may see in part (a support agent's phone numbers), a customer's own names, a refused call's
    text, a resource (never through the output guard) and a compliance officer's unmasked call are masked again
    for the stored copy."""
    phone = {"memo": "call me on +234 803 123 4567", "status": "completed"}
    officer = Principal(subject="co-1", role=Role.COMPLIANCE_OFFICER, user_id=None, token_id="t", expires_at=2**31,
                        issuer="test")
    for who, kind, decision, found, unmasked in ((agent(), "tool_call", "allowed", {"PHONE": 1}, False),
                                                 (customer(), "tool_call", "allowed", {}, False),
                                                 (agent(), "tool_call", "error", {}, False),
                                                 (agent(), "resource_read", "allowed", {}, False),
                                                 (officer, "tool_call", "allowed", {}, True)):
        stored = await _stored(who, phone, found, kind=kind, decision=decision, unmasked=unmasked)
        text = json.dumps(stored["output"])
        assert "803 123 4567" not in text and "4567" not in text, (who.role, kind, decision)
        assert stored["redactions"].get("PHONE", 0) == found.get("PHONE", 0) + 1
