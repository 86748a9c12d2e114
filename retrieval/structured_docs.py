"""Rows and credit-store documents as documents of the structured search indexes.

Pure functions: each reads only the fields its index maps (never an encrypted PII column) and passes every
free-text field through the redactor. Transactions, users and audit logs come from Postgres rows; credit
reports and disputes from raw credit-store documents.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from retrieval.converters import credit_report_doc
from retrieval.documents import MalformedDocument
from retrieval.redactor import Redactor
from stores.mongo.documents import Dispute
from stores.postgres.models import counterparty_type

Row = dict[str, Any]


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def transaction_doc(row: Row, redact: Redactor) -> Row:
    name = row.get("counterparty_name")
    person = bool(name) and counterparty_type(str(row["kind"])) == "person"
    # A natural person's name is masked whole, and wherever it recurs in the description ("Send to Peter").
    counterparty = "[PERSON]" if person else (redact(name) if name else None)
    description = redact(row["description"], [name] if person else ()) if row.get("description") else None
    return {"transaction_id": str(row["id"]), "user_id": str(row["user_id"]), "kind": str(row["kind"]),
            "status": str(row["status"]), "corridor": row.get("corridor_id"), "currency": row["currency"],
            "amount_minor": int(row["amount_minor"]), "fee_minor": int(row.get("fee_minor") or 0),
            "dest_currency": row.get("dest_currency"), "dest_amount_minor": row.get("dest_amount_minor"),
            "fx_rate": float(row["fx_rate"]) if row.get("fx_rate") is not None else None,
            "reference": row["reference"],
            "counterparty": counterparty, "description": description,
            "failure_reason": row.get("failure_reason"), "created_at": _iso(row["created_at"]),
            "updated_at": _iso(row["updated_at"]), "completed_at": _iso(row.get("completed_at"))}


def user_doc(row: Row, redact: Redactor) -> Row:
    return {"user_id": str(row["id"]), "status": str(row["status"]), "country": row["country"],
            "home_currency": row["home_currency"], "kyc_level": str(row["kyc_level"]),
            "deleted": row.get("deleted_at") is not None, "created_at": _iso(row["created_at"]),
            "updated_at": _iso(row["updated_at"])}


def audit_doc(row: Row, redact: Redactor) -> Row:
    red = row.get("redactions") or {}
    if isinstance(red, str):
        red = json.loads(red)
    return {"audit_id": str(row["id"]), "occurred_at": _iso(row["occurred_at"]),
            "actor_subject": row["actor_subject"], "actor_role": row["actor_role"],
            "user_id": str(row["actor_user_id"]) if row.get("actor_user_id") else None, "action": row["action"],
            "resource": row.get("resource"), "args_digest": row.get("args_digest"), "decision": row["decision"],
            "reason": redact(row["reason"]) if row.get("reason") else None,
            "rows_returned": int(row.get("rows_returned") or 0),
            "redaction_count": int(sum(int(v) for v in red.values() if isinstance(v, int | float))),
            "redactions": {str(k): int(v) for k, v in red.items() if isinstance(v, int | float)},
            "latency_ms": int(row.get("latency_ms") or 0), "request_id": row.get("request_id")}


def credit_report_index_doc(raw: Row, redact: Redactor) -> Row:
    doc = credit_report_doc(raw)
    accounts = raw.get("accounts") or []
    negative = sum(1 for a in accounts if a.get("status") in ("delinquent", "charged_off", "collections"))
    negative += sum(1 for i in raw.get("items") or [] if i.get("kind") in ("late_payment", "collection",
                                                                          "public_record"))
    return {"report_id": doc.source_id, "user_id": doc.user_id, "bureau": doc.metadata["bureau"],
            "country": doc.metadata["country"], "score": raw.get("score"), "version": doc.version,
            "pulled_at": _iso(raw.get("pulled_at")), "text": redact(doc.text, doc.known_names),
            "account_count": len(accounts), "negative_items": negative}


def dispute_index_doc(raw: Row, redact: Redactor) -> Row:
    try:
        d = Dispute.model_validate(raw)
    except ValueError as exc:
        raise MalformedDocument(str(raw.get("_id", "?")), "failed validation") from exc
    end = d.resolved_at or datetime.now(UTC)
    outcome = d.bureau_responses[-1].outcome if d.bureau_responses else "pending"
    return {"case_id": d.id, "user_id": d.user_id, "bureau": str(d.bureau), "reason": d.reason,
            "status": str(d.status), "outcome": outcome, "opened_at": _iso(d.opened_at),
            "resolved_at": _iso(d.resolved_at), "days_open": max(0, (end - d.opened_at).days),
            "text": redact(d.notes) if d.notes else None}
