"""How the fault scenarios match the answers the agent got against the audit rows (kredete.faults.outage)."""

from __future__ import annotations

from kredete.faults.load import Call
from kredete.faults.outage import unaudited


def _row(worker: int, action: str, decision: str, **meta) -> dict:
    return {"actor_subject": f"faults-run-{worker}", "action": action, "decision": decision, "metadata": meta}


def _call(worker: int, tool: str, ok: bool) -> Call:
    return Call(worker, tool, 0.0, 1.0, ok, "" if ok else "refused")


def test_every_answer_with_its_row_is_audited():
    calls = [_call(0, "get_wallet_balances", True), _call(0, "log_feedback", True),
             _call(1, "get_credit_report", False)]
    rows = [_row(0, "get_wallet_balances", "allowed"),
            _row(0, "log_feedback", "allowed", phase="intent"), _row(0, "log_feedback", "allowed", phase="outcome"),
            _row(1, "get_credit_report", "error")]
    assert unaudited(calls, rows) == 0


def test_a_write_with_only_its_intent_row_is_unaudited():
    # The intent row of a write that then answered says nothing about the outcome the agent saw.
    calls = [_call(0, "log_feedback", True)]
    assert unaudited(calls, [_row(0, "log_feedback", "allowed", phase="intent")]) == 1


def test_a_refused_write_whose_intent_row_was_deferred_is_audited():
    # The audit database down: the intent row went to the durable queue as the refusal (nothing was written).
    calls = [_call(2, "log_feedback", False)]
    rows = [_row(2, "log_feedback", "error", phase="intent", deferred=True)]
    assert unaudited(calls, rows) == 0


def test_a_refusal_without_any_row_is_counted():
    calls = [_call(0, "get_wallet_balances", False), _call(0, "get_wallet_balances", False)]
    assert unaudited(calls, [_row(0, "get_wallet_balances", "error")]) == 1


def test_transport_failures_need_no_row():
    calls = [Call(0, "transport", 0.0, 1.0, False, "", transport=True)]
    assert unaudited(calls, []) == 0
