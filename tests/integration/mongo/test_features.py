"""What the local MongoDB-wire server supports, measured (FerretDB 1.24 with SQLite, see the report)."""

from __future__ import annotations


async def test_probe_reports_every_feature(caps):
    from stores.mongo.capabilities import FEATURES

    assert set(caps) == set(FEATURES)
    assert caps["unique_index"] is True  # relied on for versioning and idempotency


async def test_ferretdb_findings(mongo, caps):
    info = await mongo.health()
    if not info["ferretdb"]:
        return
    # Measured against FerretDB v1.24.2 (SQLite backend); a change here means the README table is stale.
    assert caps == {"json_schema": False, "ttl_index": False, "unique_index": True, "partial_index": False,
                    "collation": False, "change_streams": False, "transactions": False, "time_series": False}
