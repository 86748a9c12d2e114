"""What the transactions search index stores: persons masked (also inside the description), shops kept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from guards.redaction import redact
from retrieval.redactor import text_redactor
from retrieval.structured_docs import transaction_doc


def _row(kind: str, counterparty: str, description: str) -> dict:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    return {"id": uuid.uuid4(), "user_id": uuid.uuid4(), "kind": kind, "status": "completed", "currency": "USD",
            "amount_minor": 1000, "reference": "KRD-ABC", "counterparty_name": counterparty,
            "description": description, "created_at": now, "updated_at": now}


def test_person_counterparty_is_masked_in_its_field_and_in_the_description():
    doc = transaction_doc(_row("remittance", "Peter Onyancha", "Send to Peter at the usual place"),
                          text_redactor(redact))
    assert doc["counterparty"] == "[PERSON]"
    assert "Peter" not in doc["description"] and "Onyancha" not in repr(doc)


def test_merchant_counterparty_stays_searchable_but_patterns_still_run():
    doc = transaction_doc(_row("card_payment", "Shoprite Lekki", "Card payment, call 0803 123 4567"),
                          text_redactor(redact))
    assert doc["counterparty"] == "Shoprite Lekki"
    assert "0803" not in doc["description"]
