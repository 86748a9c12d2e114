"""Short text renderings next to the structured content (built from the already redacted payload)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

#: Minor-unit exponents for display; the structured content keeps exact integers.
_EXPONENT = {"USDC": 6, "USDT": 6}


def money(amount_minor: int | None, currency: str | None) -> str:
    if amount_minor is None or currency is None:
        return "-"
    exp = _EXPONENT.get(currency, 2)
    return f"{currency} {Decimal(amount_minor).scaleb(-exp):,.{min(exp, 2)}f}"


def _more(payload: dict[str, Any]) -> str:
    parts = []
    if payload.get("next_cursor"):
        parts.append("more available: pass next_cursor")
    if payload.get("truncated"):
        parts.append(payload.get("note", "output truncated"))
    return f" ({'; '.join(parts)})" if parts else ""


def transactions(p: dict[str, Any]) -> str:
    rows = p.get("transactions", [])
    lines = [f"{len(rows)} transaction(s){_more(p)}:"]
    for t in rows[:10]:
        lines.append(f"- {t['created_at'][:10]} {t['status']} {t['kind']} {money(t['amount_minor'], t['currency'])}"
                     f"{' ' + t['corridor'] if t.get('corridor') else ''} ref {t['reference']}{_counterparty(t)}")
    if len(rows) > 10:
        lines.append(f"- … {len(rows) - 10} more in the structured content")
    return "\n".join(lines)


def _counterparty(t: dict[str, Any]) -> str:
    """`, counterparty (merchant): <name>`; the name as the payload has it (already redacted and delimited)."""
    kind = t.get("counterparty_type")
    if not kind:
        return ""
    name = t.get("counterparty_name")
    return f", counterparty ({kind}){': ' + name if name else ''}"


def transaction(p: dict[str, Any]) -> str:
    balanced = "balanced" if p.get("ledger_balanced") else "NOT balanced"
    return (f"Transaction {p['reference']} ({p['status']} {p['kind']}{_counterparty(p)}): "
            f"{money(p['amount_minor'], p['currency'])}, fee {money(p.get('fee_minor'), p['currency'])}; "
            f"{len(p.get('ledger_entries', []))} ledger entries, {balanced}.")


def wallets(p: dict[str, Any]) -> str:
    items = ", ".join(money(w["balance_minor"], w["currency"]) for w in p.get("wallets", []))
    return f"Wallet balances: {items or 'none'}."


def credit_report(p: dict[str, Any]) -> str:
    return (f"Credit report v{p['version']} from {p['bureau']} ({p['country']}), score {p.get('score', '-')}, "
            f"{len(p.get('accounts', []))} account(s), {len(p.get('items', []))} item(s).")


def score_history(p: dict[str, Any]) -> str:
    pts = p.get("points", [])
    if not pts:
        return "No score history."
    return f"{len(pts)} score point(s) from {pts[0]['as_of'][:10]} ({pts[0]['score']}) to {pts[-1]['as_of'][:10]} " \
           f"({pts[-1]['score']})."


def disputes(p: dict[str, Any]) -> str:
    rows = p.get("disputes", [])
    lines = [f"{len(rows)} dispute(s){_more(p)}:"]
    lines += [f"- {d['dispute_id']} {d['status']} ({d['reason']}, {d['bureau']})" for d in rows[:10]]
    return "\n".join(lines)


def passages(p: dict[str, Any]) -> str:
    rows = p.get("passages", [])
    lines = [f"{len(rows)} passage(s); cite by citation id:"]
    lines += [f"- [{x['citation']}] {x.get('title') or x['doc_type']} (score {x['score']})" for x in rows]
    return "\n".join(lines)
