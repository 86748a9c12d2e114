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
