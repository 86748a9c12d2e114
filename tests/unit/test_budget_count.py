"""guards.budget counts a text by its digit runs and the texts between them: always tiktoken's count of the whole."""

from __future__ import annotations

import json
import random

from guards import budget
from guards.budget import _count, _segmentable, _whole, count_tokens

#: Characters at the edges the split relies on: whitespace kinds, apostrophes (contractions), punctuation,
#: letters, ASCII digits, and characters that are digits or letters outside ASCII.
ALPHABET = [*"0123456789" * 4, *"abcXYZ", *" \t\n\r", *"'\"-:,.{}[]_/+", *"éß中٣²½\u00a0\u2003\x1c🙂",
            "'s", "'ll", " 12", "1 ", "\r\n", "  ", "\n\n", "…"]


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(1, 400)))


def test_the_premises_hold_for_the_encoding_in_use():
    assert _segmentable()


def test_the_sum_over_segments_is_the_count_of_the_whole_text():
    rng = random.Random(20)
    checked = 0
    for _ in range(3000):
        text = random_text(rng)
        assert _count(text) == _whole(text), repr(text)
        checked += len(list(budget._DIGITS.finditer(text))) >= budget._MIN_RUNS
    assert checked > 1000  # most texts went through the split


def test_json_pages_count_the_same_and_reuse_the_text_between_numbers():
    rng = random.Random(3)
    budget._SEGMENTS.clear()
    for n in (1, 10, 50, 60):
        rows = [{"day": f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}T00:00:00Z", "corridor": "NG-GB", "currency": "GBP",
                 "dest_currency": rng.choice(["NGN", None]), "transactions": rng.randrange(10**6),
                 "volume_minor": rng.randrange(10**15), "note": rng.choice(["", "paid 3 times", "x 2024 y", "a\n1"])}
                for i in range(n)]
        text = json.dumps({"rows": rows, "suppressed_cells": 5, "min_cell_size": 5, "next_cursor": None},
                          separators=(",", ":"))
        assert _count(text) == _whole(text)
        budget._COUNTED.clear()
        assert count_tokens(text) == _whole(text)
    assert 0 < len(budget._SEGMENTS) < 200  # keys and punctuation between the numbers, not one entry a row
