"""No operator from outside input reaches a Mongo query or document."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from stores.errors import InvalidData
from stores.mongo.safety import cap_limit, check_size, ensure_safe, ensure_safe_document, eq_filter, in_filter
from stores.scope import RowScope


@pytest.mark.parametrize("doc", [
    {"$where": "sleep(1000)"},
    {"a": {"$function": {"body": "x", "args": [], "lang": "js"}}},
    {"a": [{"ok": 1}, {"$ne": None}]},
    {"user.id": 1},
    {"a\x00b": 1},
    {"": 1},
    {1: "non-string key"},
    {"deep": {"deeper": [{"$gt": ""}]}},
])
def test_ensure_safe_rejects_operator_keys(doc):
    with pytest.raises(InvalidData) as err:
        ensure_safe(doc)
    assert "sleep" not in str(err.value)  # messages never echo values


def test_ensure_safe_accepts_plain_documents():
    doc = {"text": "$where is fine as a value", "n": 1, "list": [{"a": "b"}], "when": datetime.now(UTC)}
    assert ensure_safe(doc) is doc


def test_depth_limit():
    doc: dict = {}
    cur = doc
    for _ in range(40):
        cur["a"] = {}
        cur = cur["a"]
    with pytest.raises(InvalidData):
        ensure_safe(doc)


@pytest.mark.parametrize("value", ["$where", "{'$ne': null}", 5, 1.5, True, None, uuid.uuid4(),
                                   datetime.now(UTC)])
def test_eq_filter_wraps_scalars_in_eq(value):
    flt = eq_filter("status", value)
    assert list(flt) == ["status"] and list(flt["status"]) == ["$eq"]
    assert flt["status"]["$eq"] == (str(value) if isinstance(value, uuid.UUID) else value)


@pytest.mark.parametrize("value", [{"$ne": None}, {"$gt": ""}, ["a"], {"a": 1}, b"bytes", "a\x00b"])
def test_eq_filter_refuses_non_scalars(value):
    with pytest.raises(InvalidData):
        eq_filter("status", value)


@pytest.mark.parametrize("field", ["$where", "a.$b", "a b", "", "user_id\x00", "1abc"])
def test_field_names_must_be_identifiers(field):
    with pytest.raises(InvalidData):
        eq_filter(field, "x")


def test_in_filter():
    assert in_filter("user_id", ["a", "b"]) == {"user_id": {"$in": ["a", "b"]}}
    with pytest.raises(InvalidData):
        in_filter("user_id", ["a", {"$ne": 1}])


def test_size_limits():
    assert check_size({"a": "x" * 100}, 1000) > 100
    with pytest.raises(InvalidData, match="over the limit"):
        check_size({"a": "x" * 2000}, 1000)
    with pytest.raises(InvalidData):
        ensure_safe_document({"a": "x" * (600 * 1024)})


def test_cap_limit():
    assert cap_limit(None) == 20 and cap_limit(10_000) == 100 and cap_limit(0) == 1 and cap_limit(-5) == 1
    with pytest.raises(InvalidData):
        cap_limit("100")  # type: ignore[arg-type]
    with pytest.raises(InvalidData):
        cap_limit(True)


def test_scope_filter_is_literal():
    assert RowScope.none().mongo_filter() == {"user_id": {"$in": []}}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_numbers_are_refused(value):
    # FerretDB refuses infinities and drops the connection on NaN: such a record could never be written.
    with pytest.raises(InvalidData, match="non-finite"):
        ensure_safe({"inputs": {"x": [1.0, value]}})
    assert ensure_safe({"x": 1.5, "y": -0.0}) == {"x": 1.5, "y": -0.0}


def _principal(role: str):
    from guards.principal import Principal

    return Principal(subject=f"{role}-1", role=role, token_id="t", expires_at=2**31, issuer="test")


def test_reveal_grants_only_for_compliance_officers_with_a_reason():
    from guards.access import reveal_grant
    from guards.errors import BadInput, Forbidden
    from stores.mongo.reveal import RevealGrant, RevealRefused, check_grant

    grant = reveal_grant(_principal("compliance_officer"), "  CASE-1234: identity check for a KYC review ")
    assert (grant.role, grant.subject, grant.reason) == ("compliance_officer", "compliance_officer-1",
                                                         "CASE-1234: identity check for a KYC review")
    assert check_grant(grant, what="credit_reports") == grant and check_grant(None, what="x") is None
    for role in ("customer", "support_agent", "credit_coach", "risk_analyst"):
        with pytest.raises(Forbidden):
            reveal_grant(_principal(role), "CASE-1234: identity check for a KYC review")
    for reason in (None, "", "   short   ", "xxxxxxxxxxxxxxxx", "CASE-1234: short"):
        with pytest.raises(BadInput):
            reveal_grant(_principal("compliance_officer"), reason)
    with pytest.raises(ValueError):
        RevealGrant(role="support_agent", subject="a", reason="case KYC-1234: identity check")
    with pytest.raises(RevealRefused):
        check_grant(RevealGrant.model_construct(role="risk_analyst", subject="r", reason="x" * 20), what="x")
    with pytest.raises(RevealRefused):
        check_grant(True, what="x")
