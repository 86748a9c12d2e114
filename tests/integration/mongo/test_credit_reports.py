"""Versioned credit reports: never overwritten, latest by default, versions and points in time, PII encrypted."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from bson.binary import Binary

from stores.errors import InvalidData, NotFound
from stores.mongo.credit import CreditReportRepository
from stores.mongo.encryption import MASK, EnvelopeFieldEncryption
from stores.mongo.reveal import RevealGrant, RevealRefused
from stores.scope import RowScope
from tests.integration.mongo.factories import report, uid

GRANT = RevealGrant(role="compliance_officer", subject="co-1", reason="case KYC-1234: identity check")


@pytest.fixture(scope="module")
def repo(db, encryption):
    return CreditReportRepository(db, encryption=encryption)


async def test_versions_are_appended_never_overwritten(repo, db):
    user = uid()
    scope = RowScope.users(user)
    v1 = await repo.add_version(report(user, score=600))
    mid = datetime.now(UTC)
    await asyncio.sleep(0.01)
    v2 = await repo.add_version(report(user, score=640))
    v3 = await repo.add_version(report(user, score=655))
    assert (v1.version, v2.version, v3.version) == (1, 2, 3)
    assert v2.supersedes == v1.id and v3.supersedes == v2.id and v1.supersedes is None
    assert await db.credit_reports.count_documents({"user_id": user}) == 3
    assert (await repo.latest(scope, user)).score == 655
    assert (await repo.get_version(scope, user, 1)).score == 600
    assert (await repo.as_of(scope, user, mid)).version == 1
    assert (await repo.as_of(scope, user, datetime.now(UTC) + timedelta(days=1))).version == 3
    with pytest.raises(NotFound):
        await repo.as_of(scope, user, v1.valid_from - timedelta(days=1))
    assert [r.version for r in await repo.list_versions(scope, user)] == [3, 2, 1]


async def test_backfilled_valid_from_is_kept_and_read_at_its_point_in_time(repo):
    user = uid()
    scope = RowScope.users(user)
    jan, jun, mar = (datetime(2024, m, 1, tzinfo=UTC) for m in (1, 6, 3))
    v1 = await repo.add_version(report(user, score=600).model_copy(update={"valid_from": jan}))
    v2 = await repo.add_version(report(user, score=640).model_copy(update={"valid_from": jun}))
    assert (v1.valid_from, v2.valid_from) == (jan, jun)
    assert (await repo.get_version(scope, user, 2)).valid_from == jun  # stored as given, not "now"
    assert (await repo.as_of(scope, user, datetime(2024, 4, 1, tzinfo=UTC))).version == 1
    assert (await repo.as_of(scope, user, datetime(2024, 7, 1, tzinfo=UTC))).version == 2
    with pytest.raises(NotFound):
        await repo.as_of(scope, user, datetime(2023, 12, 31, tzinfo=UTC))
    with pytest.raises(InvalidData, match="earlier than the previous"):
        await repo.add_version(report(user).model_copy(update={"valid_from": mar}))
    assert [r.version for r in await repo.list_versions(scope, user)] == [2, 1]  # nothing written
    v3 = await repo.add_version(report(user, score=650))  # no valid_from given: now
    assert v3.valid_from > datetime.now(UTC) - timedelta(minutes=5)
    assert (await repo.latest(scope, user)).version == 3


async def test_concurrent_writers_get_distinct_versions(repo):
    user = uid()
    written = await asyncio.gather(*(repo.add_version(report(user, score=500 + i)) for i in range(12)))
    assert sorted(r.version for r in written) == list(range(1, 13))
    versions = await repo.list_versions(RowScope.users(user), user)
    assert sorted(r.version for r in versions) == list(range(1, 13))


async def test_bureaus_version_independently(repo):
    user = uid()
    await repo.add_version(report(user, bureau="crc_ng"))
    b = await repo.add_version(report(user, bureau="firstcentral_ng"))
    assert b.version == 1
    assert (await repo.latest(RowScope.users(user), user, bureau="crc_ng")).bureau == "crc_ng"


async def test_scope_is_enforced_in_the_query(repo):
    owner, other = uid(), uid()
    await repo.add_version(report(owner))
    for scope in (RowScope.users(other), RowScope.none()):
        with pytest.raises(NotFound):
            await repo.latest(scope, owner)
        assert await repo.list_versions(scope, owner) == []
    assert (await repo.latest(RowScope.everyone(), owner)).user_id == owner


async def test_pii_is_encrypted_at_rest_and_masked_on_read(repo, db, encryption):
    user = uid()
    await repo.add_version(report(user, bvn="22123456789"))
    raw = await db.credit_reports.find_one({"user_id": user})
    for value in (raw["subject"]["bvn"], raw["accounts"][0]["account_number"]):
        assert encryption.is_encrypted(value)
        assert b"22123456789" not in (bytes(value) if isinstance(value, Binary) else value.encode())
    masked = await repo.latest(RowScope.users(user), user)
    assert masked.subject.bvn == MASK and masked.accounts[0].account_number == MASK
    assert masked.accounts[0].account_number_last4 == "6789"
    clear = await repo.latest(RowScope.users(user), user, reveal=GRANT)
    assert clear.subject.bvn == "22123456789" and clear.accounts[0].account_number == "0123456789"


async def test_decryption_needs_a_valid_grant(repo):
    user = uid()
    await repo.add_version(report(user, bvn="22123456789"))
    scope = RowScope.users(user)
    forged = [True, "compliance_officer", {"role": "compliance_officer", "subject": "x", "reason": "because I can"},
              RevealGrant.model_construct(role="support_agent", subject="agent-7", reason="curious about this one"),
              RevealGrant.model_construct(role="compliance_officer", subject="co-1", reason="")]
    for bad in forged:
        with pytest.raises(RevealRefused):
            await repo.latest(scope, user, reveal=bad)  # type: ignore[arg-type]
        with pytest.raises(RevealRefused):
            await repo.list_versions(scope, user, reveal=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await repo.latest(scope, user, reveal_pii=True)  # type: ignore[call-arg]  # the old flag is gone
    for v in (await repo.latest(scope, user), *(await repo.list_versions(scope, user))):
        assert v.subject.bvn == MASK and v.accounts[0].account_number == MASK  # the default never decrypts
    assert (await repo.as_of(scope, user, datetime.now(UTC), reveal=GRANT)).subject.bvn == "22123456789"


async def test_explicit_encryption_used_when_available(encryption):
    try:
        import pymongocrypt  # noqa: F401
    except ImportError:
        pytest.skip("pymongocrypt not installed: envelope encryption is used")
    assert encryption.kind == "mongo-explicit"


async def test_envelope_fallback_roundtrip(db, master_key):
    repo = CreditReportRepository(db, encryption=EnvelopeFieldEncryption(master_key))
    user = uid()
    await repo.add_version(report(user, bvn="22999888777"))
    raw = await db.credit_reports.find_one({"user_id": user})
    assert raw["subject"]["bvn"].startswith("enc1.")
    assert (await repo.latest(RowScope.users(user), user, reveal=GRANT)).subject.bvn == "22999888777"


async def test_pii_refused_without_encryption(db):
    with pytest.raises(InvalidData):
        await CreditReportRepository(db).add_version(report(uid()))


async def test_bad_arguments(repo):
    user = uid()
    with pytest.raises(InvalidData):
        await repo.latest(RowScope.everyone(), "not-a-uuid")
    with pytest.raises(InvalidData):
        await repo.latest(RowScope.everyone(), {"$ne": None})
    with pytest.raises(InvalidData):
        await repo.get_version(RowScope.everyone(), user, 0)
    with pytest.raises(InvalidData):
        await repo.latest(RowScope.everyone(), user, bureau={"$gt": ""})
