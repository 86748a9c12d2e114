"""The staff field policy: free text withheld or cut short per role, applied around redaction, audited."""

from __future__ import annotations

import asyncio
import types
import typing
from uuid import uuid4

import pytest
from pydantic import BaseModel

from agent_tools.registry import TOOLS
from guards import field_policy
from guards.call import new_call_state
from guards.field_policy import FIELD_POLICY, FREE_TEXT, WITHHELD, TextKind, Treatment, treatment
from guards.output_redaction import OutputRedactor
from guards.principal import Principal, Role

#: Field names that hold text people write; every one in a tool's output must be declared in FREE_TEXT.
TEXT_LIKE = {"memo", "description", "notes", "note", "body", "remarks", "summary", "detail", "comment",
             "message", "text"}

LETTER = ("Dear Experian, my landlord Ama Boateng says I paid late, but I paid on time every month of "
          "2024. Please correct the record. Call me on 0803 123 4567.")


def principal(role: Role) -> Principal:
    return Principal(subject="s", role=role, user_id=uuid4() if role is Role.CUSTOMER else None,
                     token_id="t", expires_at=2**31, issuer="test")


def dispute(letter: str = LETTER) -> dict:
    return {"dispute_id": "D1", "user_id": str(uuid4()), "reason": "not_mine", "notes": letter,
            "status_history": [{"to_status": "opened", "at": "2025-01-01T00:00:00Z", "note": letter}],
            "letters": [{"sent_at": "2025-01-02T00:00:00Z", "channel": "mail", "body": letter}]}


def redact(payload: dict, role: Role, tool: str, *, unmasked: bool = False) -> tuple[dict, dict[str, int]]:
    state = new_call_state(tool, {})
    state.principal, state.unmasked = principal(role), unmasked
    out = asyncio.run(OutputRedactor(None, hash_key=b"k" * 32).redact(payload, state))
    return out, state.redactions


def _string_fields(model: type[BaseModel]) -> typing.Iterator[tuple[str, type[BaseModel]]]:
    for name, info in model.model_fields.items():
        for arg in (info.annotation, *typing.get_args(info.annotation)):
            inner = typing.get_args(arg) if typing.get_origin(arg) in (list, types.UnionType, typing.Union) else ()
            for t in (arg, *inner):
                if t is str:
                    yield name, model
                elif isinstance(t, type) and issubclass(t, BaseModel):
                    yield from _string_fields(t)


def test_every_free_text_field_of_a_declared_tool_is_in_the_policy():
    missing = sorted({(spec.name, name) for spec in TOOLS for name, _ in _string_fields(spec.output_model)
                      if name in TEXT_LIKE and (spec.name, name) not in FREE_TEXT})
    assert not missing, f"declare these free-text fields in guards/field_policy.FREE_TEXT: {missing}"


def test_declared_fields_exist_in_their_tools_output():
    fields = {spec.name: {n for n, _ in _string_fields(spec.output_model)} for spec in TOOLS}
    stale = [(tool, field) for tool, field in FREE_TEXT if field not in fields.get(tool, set())]
    assert not stale, stale


def test_support_agent_gets_the_gist_of_a_note_and_never_the_letter():
    out, counts = redact(dispute(), Role.SUPPORT_AGENT, "get_dispute")
    assert out["letters"][0]["body"] == WITHHELD
    assert out["notes"].endswith("…") and len(out["notes"]) <= field_policy.TRUNCATE_AT + 1
    assert out["status_history"][0]["note"] == out["notes"]
    assert "0803" not in out["notes"] and "Boateng" not in out["notes"], "cut short only after redaction"
    assert counts["withheld_text"] == 1 and counts["truncated_text"] == 2
    assert out["reason"] == "not_mine" and out["dispute_id"] == "D1", "ids and enums untouched"


def test_customer_reads_their_own_letter_whole_but_redacted():
    out, counts = redact(dispute(), Role.CUSTOMER, "get_dispute")
    body = out["letters"][0]["body"]
    assert body.startswith("Dear Experian") and body.endswith("Please correct the record. Call me on "
                                                              + body.rsplit("Call me on ", 1)[1])
    assert "123 4567" not in body
    assert "withheld_text" not in counts and "truncated_text" not in counts


def test_an_unmasked_call_with_its_reason_sees_the_whole_text():
    out, counts = redact(dispute(), Role.COMPLIANCE_OFFICER, "get_dispute", unmasked=True)
    assert out["letters"][0]["body"] == LETTER and "withheld_text" not in counts
    masked, counts = redact(dispute(), Role.COMPLIANCE_OFFICER, "get_dispute")
    assert masked["letters"][0]["body"].endswith("…") and counts["truncated_text"] == 3


def test_short_text_is_not_marked_truncated():
    out, counts = redact(dispute("Paid on time."), Role.SUPPORT_AGENT, "get_dispute")
    assert out["notes"] == "Paid on time." and "truncated_text" not in counts


def test_memo_is_withheld_from_support_but_the_same_field_name_elsewhere_is_not_free_text():
    tx = {"transaction_id": str(uuid4()), "memo": "rent for Ama", "description": "school fees"}
    out, _ = redact(tx, Role.SUPPORT_AGENT, "get_transaction")
    assert out["memo"] == WITHHELD and out["description"] == "school fees"
    other, _ = redact({"memo": "rent for Ama"}, Role.SUPPORT_AGENT, "search_knowledge")
    assert other["memo"] != WITHHELD


@pytest.mark.parametrize("role", ["intern", "", "SUPPORT"])
def test_a_role_the_policy_does_not_name_is_withheld_everything(role):
    assert all(treatment(role, tool, field) is Treatment.WITHHOLD for tool, field in FREE_TEXT)


def test_every_role_has_a_row_and_customers_see_every_kind():
    assert set(FIELD_POLICY) == set(Role)
    assert all(FIELD_POLICY[Role.CUSTOMER][k] is Treatment.SHOW for k in TextKind)
