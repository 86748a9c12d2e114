"""Every table of the payments schema has a written erasure policy (erase, pseudonymise, keep or none)."""

from __future__ import annotations


async def test_every_table_has_an_erasure_policy(service_store):
    from stores.postgres.privacy import TABLE_POLICY, PrivacyRepository

    tables = {t for t, _u, _x in await PrivacyRepository(service_store).tables()}
    assert tables - set(TABLE_POLICY) == set(), "add the new tables to TABLE_POLICY with the reason"
    assert all(why for _action, why in TABLE_POLICY.values())
