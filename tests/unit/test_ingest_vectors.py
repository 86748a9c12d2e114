"""Vectors in the bulk body: short decimals that still name every float32 exactly."""

from __future__ import annotations

import json

import numpy as np

from retrieval.ingest import float32_json


def test_vectors_round_trip_to_the_same_float32_values_in_fewer_characters():
    rng = np.random.default_rng(7)
    vecs = rng.standard_normal((200, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    vecs[0, :4] = [np.float32(1e-38), np.float32(-3.4e38), np.nextafter(np.float32(1), np.float32(2)), 0.0]
    for v in vecs:
        sent = json.loads(json.dumps(float32_json(v)))
        assert np.array_equal(np.asarray(sent, dtype=np.float32), v)
    short = len(json.dumps([float32_json(v) for v in vecs]))
    assert short < 0.75 * len(json.dumps([v.tolist() for v in vecs]))


def test_stored_vectors_given_back_as_lists_are_unchanged():
    stored = [0.1, -0.25, 0.3333333432674408]
    assert np.array_equal(np.asarray(float32_json(stored), dtype=np.float32), np.asarray(stored, dtype=np.float32))
