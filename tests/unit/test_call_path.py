"""The call path's shortcuts change nothing the caller sees: the recognisers' memo of short bare values (ids,
enum values, codes, numbers) still applies each call's known names and allow list, and the known-PII lookup
started while a tool runs gives the redactor exactly the users the output names (pure logic, fake lookups)."""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

from guards.call import new_call_state
from guards.output_redaction import OutputRedactor
from guards.principal import Principal, Role
from guards.redaction import PiiKind, redact_value
from guards.redaction.engine import _bare_scan, _redact
from guards.redaction.known_values import compile_known
from guards.redaction.masking import MASK_ALL, role_policy

#: Values that stay bare (read without prose), some holding PII the digit recognisers find.
BARE = ["completed", "NGN", "debit", "card_payment", "KRD-ABO4PU2C5REW", "08031234567", "4111111111111111",
        "2026-06-11T04:54:57Z", "6382fdde-1e6f-481d-886f-6479417b3f78", "Credit", "ama", "12.50"]


def test_memo_of_bare_values_gives_what_the_recognisers_give():
    known = compile_known(["Ama Credit"], ["12 Allen Avenue"], ["Bola"])
    for policy in (MASK_ALL, role_policy("support_agent")):
        for text in BARE:
            for _ in range(2):  # the second read comes from the memo
                memo = _redact(text, policy, known, None, None, prose=False)
                # every kind asked for: the same reading without the memo
                plain = _redact(text, policy, known, frozenset(PiiKind), None, prose=False)
                assert (memo.text, memo.findings) == (plain.text, plain.findings), text
    assert _bare_scan.cache_info().hits > 0


def test_a_known_name_in_a_bare_value_is_masked_per_call_not_per_memo():
    payload = {"status": "ama", "kind": "card_payment", "reference": "08031234567"}
    first, counts = redact_value(payload, known_names=["Ama Mensah"])
    assert first["status"] == "[PERSON]" and counts.get("PERSON") == 1
    assert first["reference"] != "08031234567"  # the phone number, whatever the call
    second, counts = redact_value(payload)  # another call, nobody named: the memo holds no name
    assert second["status"] == "ama" and "PERSON" not in counts
    assert second["reference"] == first["reference"]


class FakeKnown:
    """Known PII per user; records what each lookup asked for."""

    def __init__(self, pii: dict[UUID, dict[str, list[str]]], *, fail: bool = False) -> None:
        self.pii, self.fail, self.asked = pii, fail, []

    async def known_pii(self, user_ids: list[UUID]) -> dict[UUID, dict[str, list[str]]]:
        self.asked.append(sorted(user_ids))
        await asyncio.sleep(0)
        if self.fail:
            raise ConnectionError("down")
        return {u: self.pii[u] for u in user_ids if u in self.pii}


def _support_state(tool: str = "get_transaction"):
    state = new_call_state(tool, {})
    state.principal = Principal(subject="agent-1", role=Role.SUPPORT_AGENT, user_id=None, token_id="t",
                                expires_at=2**31, issuer="test")
    return state


def _run(known: FakeKnown, payload: dict, prefetch_ids: list[UUID] | None) -> tuple[dict, dict[str, int]]:
    async def go():
        redactor = OutputRedactor(known, hash_key=b"k" * 32)
        state = _support_state()
        early = redactor.prefetch(state, prefetch_ids) if prefetch_ids is not None else None
        out = await redactor.redact(payload, state, early=early)
        return out, state.redactions

    return asyncio.run(go())


def test_prefetched_lookup_redacts_like_the_lookup_after_the_tool():
    owner, payee, other = uuid4(), uuid4(), uuid4()
    pii = {owner: {"names": ["Kofi Owusu", "Kofi", "Owusu"], "addresses": []},
           payee: {"names": ["Efua Sarpong", "Efua", "Sarpong"], "addresses": []},
           other: {"names": ["Yaw Darko", "Yaw", "Darko"], "addresses": []}}
    payload = {"user_id": str(owner), "counterparty_user_id": str(payee),
               "description": "Kofi sent rent to Efua"}
    after = FakeKnown(pii)
    expected = _run(after, payload, None)
    assert after.asked == [sorted([owner, payee])]
    early = FakeKnown(pii)
    # The tool named the owner (and "other", whom the output does not name) before it ran.
    got = _run(early, payload, [owner, other])
    assert got == expected  # same text and counts: the users the output names, no more
    assert early.asked == [sorted([owner, other]), [payee]]  # only the user the prefetch did not cover


def test_a_failed_prefetch_is_looked_up_again_and_redaction_still_runs():
    owner = uuid4()
    pii = {owner: {"names": ["Kofi Owusu", "Kofi", "Owusu"], "addresses": []}}
    payload = {"user_id": str(owner), "description": "Kofi paid"}

    class FailsOnce(FakeKnown):
        async def known_pii(self, user_ids):
            self.fail = not self.asked
            return await super().known_pii(user_ids)

    known = FailsOnce(pii)
    out, _ = _run(known, payload, [owner])
    assert "Kofi" not in out["description"]
    assert known.asked == [[owner], [owner]]


def test_a_prefetch_the_output_does_not_need_is_cancelled():
    class Slow(FakeKnown):
        async def known_pii(self, user_ids):
            await asyncio.sleep(30)
            return {}

    async def go():
        known = Slow({})
        redactor = OutputRedactor(known, hash_key=b"k" * 32)
        state = _support_state()
        early = redactor.prefetch(state, [uuid4()])
        await redactor.redact({"status": "completed"}, state, early=early)
        await asyncio.sleep(0)
        return early.task

    task = asyncio.run(go())
    assert task.cancelled()  # not left running (nor holding a connection) once the output showed no user
