"""Record ids stay intact: a UUID is never (part of) a finding, whatever its hex groups look like."""

from __future__ import annotations

import random
import uuid

from guards.redaction import redact, redact_value


def test_random_uuids_are_never_redacted():
    rng = random.Random(20261201)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(20_000)]
    flagged = [i for i in ids if redact(f"transaction {i}").findings]
    assert flagged == []


def test_uuid_that_once_passed_as_an_iban_is_kept():
    tx = "ba73e889-60cf-4d96-bc43-63de6f284204"
    assert redact(tx).text == tx
    assert redact_value({"transaction_id": tx, "note": f"see {tx}"})[0] == {"transaction_id": tx,
                                                                             "note": f"see {tx}"}


def test_pii_next_to_a_uuid_is_still_redacted():
    text = "ba73e889-60cf-4d96-bc43-63de6f284204 paid to GB82 WEST 1234 5698 7654 32, call 0803 123 4567"
    r = redact(text)
    assert "GB82" not in r.text and "0803" not in r.text
    assert r.text.startswith("ba73e889-60cf-4d96-bc43-63de6f284204 ")


def test_whole_timestamps_pass_but_hinted_birth_dates_are_still_masked():
    value = {"created_at": "2026-07-27T08:32:28Z", "updated_at": "2026-07-27 08:32:28.123456+00:00",
             "date_of_birth": "1990-05-01T00:00:00", "note": "born 1990-05-01T00:00:00, call 0803 123 4567"}
    out, counts = redact_value(value)
    assert out["created_at"] == value["created_at"] and out["updated_at"] == value["updated_at"]
    assert "1990" not in out["date_of_birth"]
    assert "0803" not in out["note"] and counts
