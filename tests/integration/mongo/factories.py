"""Builders of valid documents for the Mongo tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from stores.mongo.documents import (
    BureauSubject,
    CreditAccount,
    CreditItem,
    CreditReport,
    Dispute,
)


def uid() -> str:
    return str(uuid.uuid4())


def report(user_id: str, *, bureau: str = "crc_ng", score: int = 610, bvn: str | None = "22123456789",
           remarks: str | None = None) -> CreditReport:
    return CreditReport(
        user_id=user_id, bureau=bureau, country="NG", pulled_at=datetime.now(UTC), score=score,
        subject=BureauSubject(full_name="Chioma Okafor", date_of_birth="1991-04-02", bvn=bvn, phone="08031234567"),
        accounts=[CreditAccount(creditor="GTBank", account_type="credit_card", account_number="0123456789",
                                account_number_last4="6789", opened_on="2020-01-15", currency="NGN",
                                balance_minor=125_000_00, credit_limit_minor=500_000_00,
                                payment_history=["OK", "OK", "30"])],
        items=[CreditItem(kind="late_payment", description="30 days late", reported_on="2024-03-01")],
        remarks=remarks)


def dispute(user_id: str, report_id: str | None = None, *, notes: str | None = None) -> Dispute:
    return Dispute(user_id=user_id, report_id=report_id or uid(), bureau="crc_ng", reason="incorrect_balance",
                   notes=notes)
