"""Permission matrix and per-tool latency, through the real MCP server over streamable HTTP."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from evals.harness import RotatingTokens, error_text, http_session, latency_summary, token_for

DENIED_MARKER = "may not call"


@dataclass
class Facts:
    """Records of the evals dataset that make every granted call answerable."""

    customer: UUID  # has transactions, a credit report and a dispute
    transaction: UUID  # one of the customer's transactions
    dispute: str  # one of the customer's disputes
    coach: str
    coached_user: UUID  # assigned to `coach`, has a credit report


async def find_facts(settings: Any) -> Facts:
    from stores.mongo.credit import DisputeRepository
    from stores.mongo.scans import CreditStoreScan
    from stores.registry import connect
    from stores.scope import RowScope

    stores = await connect(("postgres", "mongo"), settings=settings)
    try:
        scan = CreditStoreScan(stores.mongo)
        reported = await scan.distinct_values("credit_reports", "user_id")
        planned = await scan.distinct_values("action_plans", "user_id")
        disputed = await scan.distinct_values("dispute_cases", "user_id")
        async with stores.postgres.connection() as conn:
            with_tx = [r["user_id"] for r in await conn.fetch(
                "SELECT user_id FROM transactions GROUP BY user_id HAVING count(*) >= 3 ORDER BY user_id")]
            coach_rows = await conn.fetch("SELECT coach_subject, user_id FROM coach_assignments ORDER BY user_id")
            customer = next(u for u in with_tx if str(u) in reported and str(u) in disputed)
            tx = await conn.fetchval("SELECT id FROM transactions WHERE user_id = $1 ORDER BY created_at DESC "
                                     "LIMIT 1", customer)
        dispute = (await DisputeRepository(stores.mongo).list(RowScope.users(customer), limit=1))[0][0].id
        coach_row = next((r for r in coach_rows if str(r["user_id"]) in reported and str(r["user_id"]) in planned),
                         None) or next(r for r in coach_rows if str(r["user_id"]) in reported)
        return Facts(customer=customer, transaction=tx, dispute=dispute, coach=coach_row["coach_subject"],
                     coached_user=coach_row["user_id"])
    finally:
        await stores.close()


def args_for(tool: str, role: str, facts: Facts) -> dict[str, Any]:
    """Arguments a granted role can answer: those that name records of the dataset, else the tool's own example
    (its input schema's `examples`), else none; customers never name a user."""
    from agent_tools.registry import BY_NAME

    now = datetime.now(UTC)
    staff_user = str(facts.coached_user if role == "credit_coach" else facts.customer)
    args = {
        "search_transactions": {"limit": 5, "user_id": staff_user},
        "get_transaction": {"transaction_id": str(facts.transaction)},
        "get_wallet_balances": {"user_id": staff_user},
        "get_credit_report": {"user_id": staff_user},
        "get_score_history": {"user_id": staff_user},
        "get_action_plan": {"user_id": staff_user},
        "list_disputes": {"limit": 5, "user_id": staff_user},
        "get_dispute": {"dispute_id": facts.dispute, "user_id": staff_user},
        "search_knowledge": {"query": "how do I dispute an error on my credit report", "k": 3},
        # Each caller its own conversation: a conversation belongs to the first principal that logs under it.
        "log_feedback": {"conversation_id": f"evals-{role}-{uuid.uuid4().hex[:8]}", "score": 4, "label": "helpful"},
        "corridor_volume": {"date_from": (now - timedelta(days=365)).isoformat(), "date_to": now.isoformat()},
        "search_audit_logs": {"limit": 5},
    }.get(tool)
    if args is None:
        args = BY_NAME[tool].example() if tool in BY_NAME else {}
    if role == "customer":
        args.pop("user_id", None)
    return args


def _token(settings: Any, role: str, facts: Facts, subject: str | None = None) -> str:
    if role == "customer":
        return token_for(settings, role, user=facts.customer, subject=subject)
    if role == "credit_coach":
        return token_for(settings, role, subject=facts.coach)
    return token_for(settings, role, subject=subject or f"evals-{role}-{int(time.time())}")


async def permission_matrix(url: str, settings: Any, facts: Facts, progress: Any = None) -> dict[str, Any]:
    """Every role x tool: observed allowed/denied against GRANTS; granted calls must also succeed."""
    from agent_tools.registry import GRANTS
    from guards.principal import Role

    cells: list[dict[str, Any]] = []
    async with http_session(url, _token(settings, "support_agent", facts)) as s:
        listed = sorted(t.name for t in (await s.list_tools()).tools)
    for role in Role:
        async with http_session(url, _token(settings, role.value, facts)) as s:
            for tool in listed:
                res = await s.call_tool(tool, args_for(tool, role.value, facts))
                text = error_text(res)
                denied = res.is_error and DENIED_MARKER in text
                expected = role in GRANTS.get(tool, frozenset())
                cells.append({"role": role.value, "tool": tool, "expected": "allowed" if expected else "denied",
                              "observed": "denied" if denied else ("allowed" if not res.is_error else "allowed_error"),
                              "mismatch": expected == denied, "message": text[:160] if res.is_error else ""})
                if progress:
                    progress()
    unknown = sorted(set(listed) ^ set(GRANTS))
    return {"roles": [r.value for r in Role], "tools": listed, "cells": cells,
            "mismatches": [c for c in cells if c["mismatch"]],
            "granted_but_failed": [c for c in cells if c["observed"] == "allowed_error"],
            "tools_not_in_grants": unknown}


#: The latency run calls each tool as the first of these roles it grants (customers last: their quota is per
#: user, so their runs are capped; tools every role may call are measured for a customer, as agents use them).
LATENCY_ROLE_ORDER = ("support_agent", "credit_coach", "risk_analyst", "compliance_officer", "customer")


def latency_roles() -> dict[str, str]:
    """tool -> the role the latency run calls it as, from the tools' grants."""
    from agent_tools.registry import TOOLS
    from guards.access import ALL_ROLES

    return {t.name: "customer" if t.grant == ALL_ROLES
            else next(r for r in LATENCY_ROLE_ORDER if r in {g.value for g in t.grant}) for t in TOOLS}


async def latency(url: str, settings: Any, facts: Facts, calls: int, progress: Any = None) -> dict[str, Any]:
    """`calls` sequential calls per tool (after 3 warm-up calls), a fresh token subject every 50 calls to
    stay under the 60/min per-tool limit. That works for staff only (the limiter keys staff on role + subject):
    customers are keyed on their user id whatever the subject, and coaches keep their subject (their scope is
    bound to it), so their tools get at most 50 and 40 calls. A larger run needs its subjects listed in the
    server's KREDETE_RATE_LIMIT_EXEMPT_SUBJECTS."""
    out: dict[str, Any] = {"calls_per_tool": calls, "tools": {}}
    for tool, role in latency_roles().items():
        args = args_for(tool, role, facts)
        rot = RotatingTokens(settings, role, every=50, prefix=f"evals-lat-{tool}",
                             user=facts.customer if role == "customer" else None)
        ms: list[float] = []
        errors = 0
        # A coach's scope is bound to their subject and a customer's quota to their user id: rotating subjects
        # gives them no fresh quota, so stay under 60 calls per tool and minute.
        cap = {"credit_coach": 40, "customer": 50}.get(role)
        remaining, warm = (min(calls, cap) if cap else calls), 3
        while remaining > 0:
            batch = min(50 - warm, remaining)
            token = _token(settings, role, facts) if role == "credit_coach" else rot.next()
            async with http_session(url, token) as s:
                for _ in range(warm):
                    await s.call_tool(tool, args)
                for _ in range(batch):
                    t = time.perf_counter()
                    res = await s.call_tool(tool, args)
                    ms.append((time.perf_counter() - t) * 1000)
                    errors += int(res.is_error)
                    if progress:
                        progress()
            remaining -= batch
            warm = 0
        out["tools"][tool] = {"role": role, "errors": errors, **latency_summary(ms)}
    return out
