"""The credit-store seeder's fast paths make exactly the documents the slow ones made."""

from __future__ import annotations

import uuid

import pytest

from kredete.seed.mongo import NS, _uid, _UserSeed
from kredete.seed.people import person
from stores.mongo import documents as d


@pytest.mark.parametrize("parts", [(42, "3f1c", "report", "crc_ng", 1), ("x",), (7, "u", "score", "xds_gh", 23)])
def test_ids_are_the_uuid5_they_always_were(parts):
    assert _uid(*parts) == str(uuid.uuid5(NS, "|".join(map(str, parts))))


def test_every_unvalidated_score_point_is_what_validation_makes():
    for i in range(20):
        points = _UserSeed(person(42, i), 42).build().out["score_history"]
        assert len(points) == 24
        for p in points:
            raw = p.to_mongo()
            assert d.ScorePoint.model_validate(raw).to_mongo() == raw


def _masked(value):
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return "<enc2>" if isinstance(value, str) and value.startswith("enc2.") else value


def test_worker_built_documents_are_the_seeders_documents():
    """`build_encoded` (what the worker processes run) makes, per collection, the documents `_build_batch`
    makes with per-user keys: the same fields and values, PII encrypted under the owner's key."""
    import asyncio
    import os

    import bson

    from kredete.seed.mongo import _build_batch, _GivenKeys, _plain, build_encoded
    from stores.crypto import UserCipher

    people = [_plain(person(42, i)) for i in range(15)]
    keys = {str(p["user_id"]): os.urandom(32) for p in people}
    encoded = build_encoded(people, 42, keys)
    direct = asyncio.run(_build_batch(_GivenKeys(keys), people, 42))
    assert set(encoded) == set(direct)
    for coll, docs in direct.items():
        got = [bson.decode(b, codec_options=bson.CodecOptions(tz_aware=True)) for b in encoded[coll]]
        assert [_masked(g) for g in got] == [_masked(bson.decode(bson.encode(d), codec_options=bson.CodecOptions(
            tz_aware=True))) for d in docs], coll
    report, same = bson.decode(encoded["credit_reports"][0]), direct["credit_reports"][0]
    user = UserCipher(report["user_id"], keys[report["user_id"]])
    number = report["accounts"][0]["account_number"]
    assert number.startswith("enc2.")
    context = "credit_reports.accounts.account_number"
    assert user.decrypt(number, context) == user.decrypt(same["accounts"][0]["account_number"], context)
    assert user.decrypt(number, context).endswith(report["accounts"][0]["account_number_last4"])
