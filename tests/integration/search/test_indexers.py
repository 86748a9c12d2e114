"""Transactions / users / audit / disputes indexes: row mapping, scoped search, aggregations, feeds."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from retrieval.errors import InvalidQuery
from retrieval.indexers import DocIndexer, dispute_outcomes, search_index, volume_by_corridor_per_day
from stores.scope import RowScope

DAY = datetime(2025, 3, 1, tzinfo=UTC)
A, B = str(uuid.uuid4()), str(uuid.uuid4())


def tx(i: int, user: str, corridor: str, day: int, status: str = "completed", **kw) -> dict:
    return {"id": uuid.UUID(int=i), "user_id": user, "kind": "transfer", "status": status, "corridor_id": corridor,
            "currency": "USD" if corridor.startswith("US") else "GBP", "amount_minor": 10_000 + i, "fee_minor": 299,
            "dest_currency": "NGN", "dest_amount_minor": 15_000_000, "fx_rate": "1500.123456",
            "reference": f"KRD-{i:012d}", "counterparty_name": kw.get("cp", "Chinedu Okafor"),
            "description": kw.get("desc", "school fees for my sister, call 08031234567"),
            "created_at": DAY + timedelta(days=day, hours=i % 5), "updated_at": DAY + timedelta(days=day, hours=i % 5)}


@pytest.fixture(scope="module")
async def tx_index(search_store):
    idx = DocIndexer(search_store, "transactions")
    await idx.ensure()
    rows = [tx(i, A if i % 2 else B, "US-NG" if i % 3 else "GB-GH", i % 3) for i in range(1, 31)]
    rows.append({"id": "broken"})  # malformed: skipped, counted
    n, skipped = await idx.index_rows(rows)
    assert n == 30 and len(skipped) == 1
    await search_store.os.indices.refresh(index=idx.alias)
    return rows[:-1]


async def test_transaction_search_is_scoped_and_redacted(search_store, tx_index):
    mine = await search_index(search_store, "transactions", RowScope.users(A), text="school fees", k=100)
    assert mine and all(r["user_id"] == A for r in mine)
    assert all("08031234567" not in r["description"] for r in mine)
    assert await search_index(search_store, "transactions", RowScope.none(), k=100) == []
    staff = await search_index(search_store, "transactions", RowScope.everyone(), filters={"corridor": "GB-GH"},
                               k=100, sort=[{"created_at": "asc"}])
    assert len(staff) == 10 and all(r["corridor"] == "GB-GH" for r in staff)
    with pytest.raises(InvalidQuery, match="unknown field"):
        await search_index(search_store, "transactions", RowScope.everyone(), filters={"pan": "4111"})


async def test_volume_by_corridor_per_day(search_store, tx_index):
    rows = await volume_by_corridor_per_day(search_store, DAY, DAY + timedelta(days=5))
    want: dict[tuple[str, str], int] = {}
    for r in tx_index:
        key = (r["created_at"].date().isoformat(), r["corridor_id"])
        want[key] = want.get(key, 0) + r["amount_minor"]
    assert {(r["day"], r["corridor"]): r["amount_minor"] for r in rows} == want
    assert all(r["currency"] in ("USD", "GBP") for r in rows)


async def test_dispute_outcomes(search_store):
    idx = DocIndexer(search_store, "disputes")
    await idx.ensure()
    opened = datetime(2025, 1, 1, tzinfo=UTC)

    def case(i: int, outcome: str | None) -> dict:
        d = {"_id": f"case-{i}", "user_id": A, "report_id": "r1", "bureau": "experian", "reason": "not_mine",
             "status": "resolved" if outcome else "under_review", "opened_at": opened,
             "resolved_at": opened + timedelta(days=10 + i) if outcome else None, "notes": "Ada called"}
        if outcome:
            d["bureau_responses"] = [{"response_id": f"x{i}", "received_at": opened, "outcome": outcome}]
        return d

    rows = [case(0, "deleted"), case(1, "deleted"), case(2, "verified"), case(3, None), {"_id": "bad"}]
    n, skipped = await idx.index_rows(rows)
    assert n == 4 and skipped == ["bad: failed validation"]
    await search_store.os.indices.refresh(index=idx.alias)
    out = await dispute_outcomes(search_store)
    assert out["by_outcome"]["deleted"] == {"count": 2, "avg_days_open": 10.5}
    assert out["by_outcome"]["verified"]["count"] == 1 and out["by_outcome"]["pending"]["count"] == 1
    assert out["by_status"] == {"resolved": 3, "under_review": 1}


class FakePg:
    """Enough of PostgresStore for the keyset feed: rows ordered by (updated_at, id)."""

    def __init__(self, rows):
        self.rows = sorted(rows, key=lambda r: (r["updated_at"], str(r["id"])))
        self.queries = 0

    @contextlib.asynccontextmanager
    async def connection(self, replica=False):
        yield self

    async def fetch(self, sql, ts, rid):
        self.queries += 1
        limit = int(sql.rsplit("LIMIT", 1)[1])
        rows = [r for r in self.rows if ts is None or (r["updated_at"], str(r["id"])) > (ts, rid)]
        return rows[:limit]


async def test_postgres_feed_is_incremental_and_rebuild_swaps(search_store):
    idx = DocIndexer(search_store, "users")
    t0 = datetime(2025, 2, 1, tzinfo=UTC)
    users = [{"id": uuid.UUID(int=i), "status": "active", "country": "NG", "home_currency": "NGN",
              "kyc_level": "full", "created_at": t0, "updated_at": t0 + timedelta(minutes=i // 4)} for i in range(25)]
    pg = FakePg(users)
    first = await idx.sync(postgres=pg, batch=7)
    assert first["indexed"] == 25
    later = {**users[3], "status": "suspended", "updated_at": t0 + timedelta(days=1)}
    pg.rows.append(later)
    second = await idx.sync(postgres=pg, batch=7)
    assert second["indexed"] == 1  # only what changed since the checkpoint
    report = await idx.rebuild(postgres=FakePg([*users[:3], later, *users[4:]]))
    assert report.new_count == 25 and report.new_index.endswith("-000002")
    got = await search_index(search_store, "users", RowScope.everyone(), filters={"status": "suspended"})
    assert [g["user_id"] for g in got] == [str(uuid.UUID(int=3))]
