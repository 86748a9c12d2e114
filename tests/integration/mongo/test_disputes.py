"""Dispute state machine, scoped reads, opaque cursors that cannot widen the scope."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from stores.errors import InvalidData, NotFound
from stores.mongo.credit import BureauResponseRepository, DisputeRepository
from stores.mongo.documents import BureauResponse, BureauSubject, DisputeLetter, DisputeStatus, now
from stores.mongo.encryption import MASK
from stores.scope import RowScope
from tests.integration.mongo.factories import dispute, uid

S = DisputeStatus


@pytest.fixture(scope="module")
def repo(db, encryption):
    return DisputeRepository(db, encryption=encryption)


async def test_happy_path_and_history(repo):
    user = uid()
    d = await repo.create(dispute(user, notes="Balance is wrong"))
    assert d.status is S.OPENED and d.revision == 1
    d = await repo.add_letter(d.id, DisputeLetter(sent_at=now(), body="Dear bureau, ..."))
    for target in (S.SUBMITTED_TO_BUREAU, S.UNDER_REVIEW, S.RESOLVED):
        d = await repo.transition(d.id, target, f"to {target.value}")
    assert d.status is S.RESOLVED and d.resolved_at is not None
    assert [c.to_status for c in d.status_history] == [S.OPENED, S.SUBMITTED_TO_BUREAU, S.UNDER_REVIEW, S.RESOLVED]
    assert len(d.letters) == 1 and d.revision == 5


@pytest.mark.parametrize(("path", "bad"), [
    ((), S.UNDER_REVIEW), ((), S.RESOLVED), ((S.SUBMITTED_TO_BUREAU,), S.OPENED),
    ((S.SUBMITTED_TO_BUREAU, S.UNDER_REVIEW, S.REJECTED), S.UNDER_REVIEW), ((), "closed"),
])
async def test_illegal_transitions(repo, path, bad):
    d = await repo.create(dispute(uid()))
    for step in path:
        await repo.transition(d.id, step, None)
    with pytest.raises(InvalidData):
        await repo.transition(d.id, bad, None)


async def test_get_outside_scope_is_not_found(repo):
    owner = uid()
    d = await repo.create(dispute(owner))
    assert (await repo.get(RowScope.users(owner), owner, d.id)).id == d.id
    stranger = uid()
    with pytest.raises(NotFound):
        await repo.get(RowScope.users(stranger), owner, d.id)
    with pytest.raises(NotFound):
        await repo.get(RowScope.users(stranger), stranger, d.id)
    with pytest.raises(NotFound):
        await repo.get(RowScope.none(), owner, d.id)
    with pytest.raises(NotFound):
        await repo.get(RowScope.everyone(), stranger, d.id)
    with pytest.raises(InvalidData):
        await repo.get(RowScope.everyone(), owner, {"$ne": None})  # type: ignore[arg-type]
    with pytest.raises(InvalidData):
        await repo.get(RowScope.everyone(), {"$ne": None}, d.id)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        await repo.get(RowScope.everyone(), owner, "$where")


async def test_pagination_walks_everything_once(repo):
    user = uid()
    ids = {(await repo.create(dispute(user))).id for _ in range(7)}
    scope = RowScope.users(user)
    seen, cursor, pages = [], None, 0
    while True:
        items, cursor = await repo.list(scope, user_id=user, cursor=cursor, limit=3)
        seen += [i.id for i in items]
        pages += 1
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 7 and set(seen) == ids


async def test_list_filters_by_status_and_scope(repo):
    a, b = uid(), uid()
    da = await repo.create(dispute(a))
    await repo.transition(da.id, S.SUBMITTED_TO_BUREAU, None)
    await repo.create(dispute(b))
    items, _ = await repo.list(RowScope.users(a), status="submitted_to_bureau")
    assert [i.id for i in items] == [da.id]
    items, _ = await repo.list(RowScope.users(a), user_id=b)
    assert items == []
    with pytest.raises(InvalidData):
        await repo.list(RowScope.users(a), status={"$ne": "x"})  # type: ignore[arg-type]
    items, _ = await repo.list(RowScope.users(a), limit=10_000)
    assert len(items) <= 100


async def test_cursor_cannot_widen_scope_or_be_forged(repo):
    a, b = uid(), uid()
    for _ in range(3):
        await repo.create(dispute(a))
        await repo.create(dispute(b))
    _, cursor = await repo.list(RowScope.users(a), limit=1)
    assert cursor
    with pytest.raises(InvalidData):  # another principal's scope
        await repo.list(RowScope.users(b), cursor=cursor, limit=1)
    with pytest.raises(InvalidData):
        await repo.list(RowScope.users(a), cursor="not-base64!!", limit=1)
    body = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    body["q"] = "0" * 16
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).decode()
    with pytest.raises(InvalidData):
        await repo.list(RowScope.users(a), cursor=forged, limit=1)
    items, _ = await repo.list(RowScope.users(a), cursor=cursor, limit=100)
    assert {i.user_id for i in items} == {a}


async def test_bureau_response_attached_and_encrypted(repo, db, encryption):
    user = uid()
    d = await repo.create(dispute(user))
    responses = BureauResponseRepository(db, encryption=encryption)
    r = await responses.add(BureauResponse(user_id=user, dispute_id=d.id, bureau="crc_ng", received_at=now(),
                                           outcome="updated", body="Balance corrected",
                                           subject=BureauSubject(full_name="Ada Obi", bvn="22111222333")), repo)
    again = await repo.get(RowScope.users(user), user, d.id)
    assert [x.response_id for x in again.bureau_responses] == [r.id]
    raw = await db.bureau_responses.find_one({"_id": r.id})
    assert encryption.is_encrypted(raw["subject"]["bvn"])
    (read,) = await responses.for_dispute(RowScope.users(user), user, d.id)
    assert read.subject.bvn == MASK


async def test_concurrent_transitions_exactly_one_wins(repo):
    from stores.errors import Conflict

    for _ in range(5):
        d = await repo.create(dispute(uid()))
        results = await asyncio.gather(*(repo.transition(d.id, S.SUBMITTED_TO_BUREAU, f"w{i}") for i in range(8)),
                                       return_exceptions=True)
        wins = [r for r in results if not isinstance(r, BaseException)]
        assert len(wins) == 1, results
        assert all(isinstance(r, Conflict | InvalidData) for r in results if isinstance(r, BaseException))
        final = await repo.get(RowScope.everyone(), d.user_id, d.id)
        assert final.revision == 2 and len(final.status_history) == 2


async def test_dead_writer_claim_is_rolled_forward(repo, db):
    from stores.errors import Conflict

    d = await repo.create(dispute(uid()))
    repo_fast = DisputeRepository(db, encryption=repo.encryption)
    repo_fast.claim_timeout = 0.0
    # a writer claimed revision 2 and died before updating the dispute
    await db.write_claims.insert_one({"_id": f"dispute_cases:{d.id}:2", "set": {"status": "submitted_to_bureau",
                                      "revision": 2, "updated_at": now(), "last_event_id": f"dispute_cases:{d.id}:2"},
                                      "push": {}, "event": {"status": "submitted_to_bureau", "revision": 2},
                                      "created_at": now(), "expires_at": now()})
    await asyncio.sleep(0.01)
    with pytest.raises(Conflict):
        await repo_fast.transition(d.id, S.SUBMITTED_TO_BUREAU, None)
    rolled = await repo.get(RowScope.everyone(), d.user_id, d.id)
    assert rolled.status is S.SUBMITTED_TO_BUREAU and rolled.revision == 2
    assert await db.outbox_events.count_documents({"_id": f"dispute_cases:{d.id}:2"}) == 1
    assert (await repo.transition(d.id, S.UNDER_REVIEW, None)).revision == 3
