"""`redact_value` redacts a string met again under the same key and hint once per call (a page's repeated
currencies, corridors, days, statuses): its output and counts must be exactly those of redacting every string."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from guards.redaction import RedactionPolicy, engine, redact_value, role_policy
from guards.redaction.known_values import compile_known

KNOWN_NAMES = ["Adaeze Okonkwo", "Kwame Mensah", "Grace Will"]
KNOWN_ADDRESSES = ["12 Admiralty Way, Lekki Phase 1, Lagos"]
ALLOW = ["Kwame Mensah", "+233 24 123 4567"]


class Payee(BaseModel):
    full_name: str
    phone: str
    note: str


def _corridor_page(n: int) -> dict[str, Any]:
    day = datetime(2025, 6, 1, tzinfo=UTC)
    pairs = [("NG-GB", "GBP", "NGN"), ("GH-GB", "GBP", "GHS"), ("KE-US", "USD", "KES"), ("NG-US", "USD", None)]
    rows = [{"day": (day + timedelta(days=i // 4)).isoformat(), "corridor": c, "currency": f, "dest_currency": t,
             "transactions": 10 + i, "volume_minor": 10**6 + i} for i, (c, f, t) in
            ((i, pairs[i % 4]) for i in range(n))]
    return {"rows": rows, "suppressed_cells": 5, "min_cell_size": 5, "next_cursor": "eyJiIjoiMjAyNS0wNi0wMSJ9"}


def _records(rng: random.Random) -> list[dict[str, Any]]:
    """Rows whose strings repeat across rows, keys and hints: the same text as prose, as a bare enum value, as a
    hinted person/phone/email field, as a merchant's or a person's counterparty name, as a known name or address."""
    texts = ["Adaeze Okonkwo", "Kwame Mensah", "call 0803 123 4567", "+233 24 123 4567", "ada@kredete.ng",
             "completed", "NGN", "Grace", "Will", "Send to Peter Obi", "Bank transfer in", "BVN 22123456789",
             "12 Admiralty Way, Lekki Phase 1, Lagos", "Rent for May, Adaeze", "card 4111 1111 1111 1111", ""]
    keys = ["description", "memo", "status", "currency", "full_name", "phone", "email", "counterparty_name",
            "reference", "note", "corridor"]
    out = []
    for i in range(60):
        row: dict[str, Any] = {k: rng.choice(texts) for k in rng.sample(keys, 6)}
        if "counterparty_name" in row:
            row["counterparty_type"] = rng.choice(["merchant", "person", "system", None])
        row["id"] = i
        row["tags"] = [rng.choice(texts) for _ in range(3)]
        row["pair"] = (rng.choice(texts), rng.choice(texts))
        row["payee"] = Payee(full_name=rng.choice(texts), phone=rng.choice(texts), note=rng.choice(texts))
        row[7] = rng.choice(texts)  # a key that is not a string
        out.append(row)
    return out


PAYLOADS = [
    _corridor_page(50),
    _corridor_page(0),
    {"items": _records(random.Random(1))},
    {"items": _records(random.Random(2)), "next_cursor": None, "nested": {"deep": [_records(random.Random(3))[:5]]}},
    ["Adaeze Okonkwo", "Adaeze Okonkwo", {"full_name": "Adaeze Okonkwo"}, {"status": "Adaeze Okonkwo"}],
]
POLICIES = [RedactionPolicy(), role_policy("customer"), role_policy("support_agent"),
            role_policy("compliance_officer", unmasked=True, hash_key="k" * 32),
            RedactionPolicy(default="hash", hash_key="k" * 32)]


def _unmemoised(payload: Any, policy: RedactionPolicy, **known: list[str]) -> tuple[Any, dict[str, int]]:
    """What `redact_value` does, with every string redacted on its own (no memo)."""
    names: list[str] = []
    engine._row_names(payload, names)
    kv = compile_known(known.get("known_names"), known.get("known_addresses"), known.get("allow_names"), names)
    return engine._redact_tree(payload, policy, kv, None)


@pytest.mark.parametrize("policy", POLICIES, ids=["mask_all", "customer", "support", "unmasked", "hash"])
@pytest.mark.parametrize("payload", PAYLOADS, ids=["corridor_page", "empty_page", "records", "nested", "list"])
@pytest.mark.parametrize("with_known", [False, True])
def test_memo_gives_the_same_output_and_counts(payload: Any, policy: RedactionPolicy, with_known: bool) -> None:
    known = {"known_names": KNOWN_NAMES, "known_addresses": KNOWN_ADDRESSES, "allow_names": ALLOW} if with_known \
        else {}
    got, got_counts = redact_value(payload, policy, **known)
    want, want_counts = _unmemoised(payload, policy, **known)
    assert got == want
    # Byte-identical once serialised, tuples and sets included (same containers, same order).
    assert json.dumps(got, default=repr) == json.dumps(want, default=repr)
    assert got_counts == want_counts


def test_repeated_values_are_counted_every_time() -> None:
    rows = [{"email": "ada@kredete.ng", "memo": "call 0803 123 4567"} for _ in range(5)]
    out, counts = redact_value(rows)
    assert out == [{"email": "[EMAIL]", "memo": "call [PHONE]"}] * 5
    assert counts == {"EMAIL": 5, "PHONE": 5}


def test_the_same_text_under_another_key_or_hint_is_redacted_for_that_key() -> None:
    """A memo keyed by text alone would give the bare field's answer to the hinted one (or the reverse)."""
    row = {"status": "n/a", "phone": "n/a", "reference": "Shoprite", "email": "Shoprite"}
    out, counts = redact_value([row, row, {"reference": "Shoprite", "phone": "n/a"}])
    assert out[:2] == [{"status": "n/a", "phone": "[PHONE]", "reference": "Shoprite", "email": "[EMAIL]"}] * 2
    assert out[2] == {"reference": "Shoprite", "phone": "[PHONE]"}
    assert counts == {"PHONE": 3, "EMAIL": 2}


def test_a_memo_lives_for_one_call() -> None:
    """Known values differ from call to call: a name known to one call is not masked by the next."""
    first, _ = redact_value({"memo": "ref kwame"}, known_names=["Zubby Kwame"])
    second, counts = redact_value({"memo": "ref kwame"})
    assert first == {"memo": "ref [PERSON]"}
    assert second == {"memo": "ref kwame"} and counts == {}
