"""Render credit-store documents (raw Mongo dicts) as text documents for the knowledge index.

Identity blocks (names, SSN/BVN/NIN, address, phone, full account numbers) are never rendered; the
subject's name is passed to the redactor as a known name so free text mentioning it is masked too.
A record that fails validation raises MalformedDocument with the reason.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pydantic import ValidationError

from retrieval.documents import MalformedDocument, SourceDoc


def _validate(model: Any, raw: dict[str, Any]) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "<root>" for e in exc.errors()})[:5]
        raise MalformedDocument(str(raw.get("_id", "?")), f"failed validation: {', '.join(fields)}") from exc


def _money(minor: int | None, currency: str) -> str:
    return "n/a" if minor is None else f"{minor / 100:,.2f} {currency}"


def _day(value: Any) -> str:
    return value.isoformat()[:10] if value is not None else "n/a"


def credit_report_doc(raw: dict[str, Any]) -> SourceDoc:
    from stores.mongo.documents import CreditReport

    if not isinstance(raw, dict) or not raw.get("_id"):
        raise MalformedDocument(str(raw.get("_id", "?")) if isinstance(raw, dict) else "?", "not a document")
    r = _validate(CreditReport, _strip_encrypted(raw))
    lines = [f"Credit report from {r.bureau} ({r.country}), version {r.version}, pulled {_day(r.pulled_at)}.",
             f"Score: {r.score if r.score is not None else 'none'} ({r.score_model})."]
    if r.accounts:
        lines.append(f"Accounts ({len(r.accounts)}):")
    for a in r.accounts:
        late = Counter(p for p in a.payment_history if p not in ("OK", "ND"))
        late_s = ", ".join(f"{n}x {k}" for k, n in sorted(late.items())) or "none"
        util = (f", utilisation {a.balance_minor / a.credit_limit_minor:.0%}"
                if a.credit_limit_minor else "")
        lines.append(f"- {a.creditor} {a.account_type.replace('_', ' ')}"
                     f"{f' ending {a.account_number_last4}' if a.account_number_last4 else ''}: {a.status}, "
                     f"balance {_money(a.balance_minor, a.currency)}, limit {_money(a.credit_limit_minor, a.currency)}"
                     f"{util}, opened {_day(a.opened_on)}, late payments: {late_s}."
                     f"{f' Remarks: {a.remarks}' if a.remarks else ''}")
    for it in r.items:
        amount = f" ({_money(it.amount_minor, it.currency or '')})" if it.amount_minor is not None else ""
        lines.append(f"- {it.kind.replace('_', ' ')} reported {_day(it.reported_on)}{amount}: {it.description}")
    if r.remarks:
        lines.append(f"Remarks: {r.remarks}")
    return SourceDoc(source_id=r.id, doc_type="credit_report", user_id=r.user_id, version=str(r.version),
                     title=f"Credit report {r.bureau} v{r.version}", text="\n".join(lines),
                     updated_at=r.created_at, metadata={"bureau": str(r.bureau), "country": r.country},
                     known_names=(r.subject.full_name,), supersedes=r.supersedes)


def dispute_docs(raw: dict[str, Any], known_names: tuple[str, ...] = ()) -> list[SourceDoc]:
    """The case summary and one document per letter."""
    from stores.mongo.documents import Dispute

    if not isinstance(raw, dict) or not raw.get("_id"):
        raise MalformedDocument("?", "not a document")
    d = _validate(Dispute, raw)
    history = "; ".join(f"{h.to_status} on {_day(h.at)}" + (f" ({h.note})" if h.note else "")
                        for h in d.status_history)
    outcomes = ", ".join(r.outcome for r in d.bureau_responses) or "none yet"
    text = (f"Dispute with {d.bureau} about report {d.report_id}: reason {d.reason.replace('_', ' ')}. "
            f"Status {d.status}, opened {_day(d.opened_at)}"
            f"{f', resolved {_day(d.resolved_at)}' if d.resolved_at else ''}. Bureau outcomes: {outcomes}."
            f"{f' History: {history}.' if history else ''}{f' Notes: {d.notes}' if d.notes else ''}")
    meta = {"bureau": str(d.bureau), "status": str(d.status)}
    docs = [SourceDoc(source_id=d.id, doc_type="dispute", user_id=d.user_id, version=str(d.revision),
                      title=f"Dispute {d.reason.replace('_', ' ')} ({d.bureau})", text=text,
                      updated_at=d.updated_at, metadata=meta, known_names=known_names)]
    for letter in d.letters:
        docs.append(SourceDoc(source_id=f"{d.id}.{letter.letter_id}", doc_type="dispute_letter",
                              user_id=d.user_id, version="1", title=f"Dispute letter to {d.bureau}",
                              text=letter.body, updated_at=letter.sent_at, known_names=known_names,
                              metadata={**meta, "dispute_id": d.id, "channel": letter.channel}))
    return docs


def action_plan_doc(raw: dict[str, Any]) -> SourceDoc:
    from stores.mongo.documents import ActionPlan

    if not isinstance(raw, dict) or not raw.get("_id"):
        raise MalformedDocument("?", "not a document")
    p = _validate(ActionPlan, raw)
    lines = [f"Credit action plan version {p.version}: horizon {p.horizon_months} months"
             f"{f', target score {p.target_score}' if p.target_score else ''}."]
    if p.summary:
        lines.append(p.summary)
    for s in p.steps:
        lines.append(f"- {s.title} ({s.factor.replace('_', ' ')}, {s.status}"
                     f"{f', due {_day(s.due_on)}' if s.due_on else ''}){f': {s.detail}' if s.detail else ''}")
    return SourceDoc(source_id=p.id, doc_type="action_plan", user_id=p.user_id, version=str(p.version),
                     title=f"Action plan v{p.version}", text="\n".join(lines), updated_at=p.created_at,
                     supersedes=p.supersedes)


def _strip_encrypted(raw: dict[str, Any]) -> dict[str, Any]:
    """Encrypted identifiers are stored as envelopes; they are never rendered, so drop them."""
    raw = dict(raw)
    subject = dict(raw.get("subject") or {})
    for key in ("ssn", "bvn", "nin"):
        subject.pop(key, None)
    if subject:
        raw["subject"] = subject
    raw["accounts"] = [{k: v for k, v in a.items() if k != "account_number"} if isinstance(a, dict) else a
                       for a in raw.get("accounts") or []]
    return raw
