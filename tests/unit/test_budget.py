"""Token budget on synthetic payloads: the output always fits, says what it dropped, and keeps rows reachable."""

from __future__ import annotations

import pytest

from guards.budget import MAX_OUTPUT_BYTES, MAX_OUTPUT_TOKENS, OutputTooLarge, count_tokens, fit_to_budget
from guards.untrusted import CLOSE, OPEN, wrap


def dispute(letters: int = 50, notes: int = 100) -> dict:
    """A dispute like the red team's: 50 letters and 100 history notes (about 20k tokens)."""
    return {
        "dispute_id": "dsp-1", "user_id": "7f3c1f9e-2f7a-4a4e-9d55-0c2b2a6f0a11", "status": "under_review",
        "notes": wrap("customer disputes a late payment " * 10),
        "letters": [{"sent_at": f"2025-01-{1 + i % 28:02d}T00:00:00Z", "channel": "mail",
                     "body": wrap(f"Dear bureau, letter {i}. " + "Please correct the record of my account. " * 30)}
                    for i in range(letters)],
        "status_history": [{"from_status": "opened", "to_status": "under_review", "at": "2025-02-01T00:00:00Z",
                            "note": wrap(f"note {i}: " + "called the bureau again " * 6)} for i in range(notes)],
        "bureau_responses": [{"received_at": "2025-03-01T00:00:00Z", "outcome": "pending"}],
    }


def test_a_payload_that_fits_is_returned_unchanged():
    payload = {"transactions": [{"n": 1}], "next_cursor": None}
    out, truncated = fit_to_budget(payload, "transactions")
    assert out is payload and not truncated and "truncated" not in out


def test_a_big_single_record_is_cut_to_the_budget_by_its_largest_lists_first():
    payload = dispute()
    assert count_tokens(payload) > 4 * MAX_OUTPUT_TOKENS
    out, truncated = fit_to_budget(payload, None)
    assert truncated and out["truncated"] is True
    assert count_tokens(out) <= MAX_OUTPUT_TOKENS
    # The largest list (letters) lost the most; each trimmed list says how many items it dropped.
    assert set(out["omitted"]) <= {"letters", "status_history"} and "letters" in out["omitted"]
    for name in out["omitted"]:
        assert len(out[name]) + out["omitted"][name] == len(payload[name])
        assert f"{name}: {len(out[name])} of {len(payload[name])} shown" in out["note"]
    assert out["letters"] == payload["letters"][: len(out["letters"])]  # a prefix, items untouched
    assert out["bureau_responses"] == payload["bureau_responses"] and out["notes"] == payload["notes"]
    # It keeps as much as fits: one more letter would not.
    more = {**out, "letters": payload["letters"][: len(out["letters"]) + 1]}
    assert count_tokens(more) > MAX_OUTPUT_TOKENS


@pytest.mark.parametrize("budget", [300, 1000, 2500, 4000])
def test_the_output_fits_whatever_the_budget(budget):
    out, truncated = fit_to_budget(dispute(), None, max_tokens=budget)
    assert truncated and count_tokens(out) <= budget


def test_long_strings_are_cut_after_lists_and_stay_delimited():
    payload = {"dispute_id": "d", "notes": wrap("word " * 20_000), "letters": []}
    out, truncated = fit_to_budget(payload, None)
    assert truncated and count_tokens(out) <= MAX_OUTPUT_TOKENS
    assert out["notes"].startswith(OPEN) and out["notes"].endswith(CLOSE) and "…[truncated]" in out["notes"]
    assert out["notes"].count(OPEN) == 1 and out["notes"].count(CLOSE) == 1
    assert "long text(s) cut" in out["note"]


def test_one_list_row_too_big_for_the_budget_is_trimmed_inside():
    row = {"id": "r0", "entries": [{"line": i, "memo": "x" * 200} for i in range(200)]}
    payload = {"transactions": [row, {"id": "r1"}], "next_cursor": "after-r1"}
    out, truncated = fit_to_budget(payload, "transactions", cursor_after=lambda i: f"after-r{i}")
    assert truncated and count_tokens(out) <= MAX_OUTPUT_TOKENS
    assert [r["id"] for r in out["transactions"]] == ["r0"] and out["next_cursor"] == "after-r0"
    assert out["omitted"]["transactions[0].entries"] == 200 - len(out["transactions"][0]["entries"])


def test_a_cut_page_reissues_the_cursor_from_the_last_row_shown():
    rows = [{"id": i, "description": "school fees and rent " * 12} for i in range(100)]
    out, truncated = fit_to_budget({"transactions": rows, "next_cursor": "after-99"}, "transactions",
                                   cursor_after=lambda i: f"after-{i}")
    shown = len(out["transactions"])
    assert truncated and 0 < shown < 100 and count_tokens(out) <= MAX_OUTPUT_TOKENS
    assert out["next_cursor"] == f"after-{shown - 1}"
    assert f"{shown} of 100 items shown" in out["note"] and "capped" in out["note"]
    assert out["omitted"] == {"transactions": 100 - shown}


def test_a_cut_page_without_a_way_to_reissue_drops_the_cursor_that_would_skip_rows():
    rows = [{"id": i, "description": "school fees and rent " * 12} for i in range(100)]
    out, _ = fit_to_budget({"disputes": rows, "next_cursor": "after-99"}, "disputes")
    shown = len(out["disputes"])
    assert out["next_cursor"] is None
    assert f"ask for fewer (limit={shown}" in out["note"]


def test_following_reissued_cursors_reaches_every_row_exactly_once():
    """A fake paged source behind the budget: an agent that follows next_cursor sees all 100 rows."""
    data = [{"id": i, "description": ("long memo " * (5 + 20 * (i % 7)))} for i in range(100)]

    def page(after: int, limit: int) -> tuple[dict, callable]:
        chunk = data[after + 1: after + 1 + limit]
        more = after + 1 + limit < len(data)
        payload = {"transactions": chunk, "next_cursor": str(chunk[-1]["id"]) if more else None}
        return payload, (lambda i: str(chunk[i]["id"]) if (i < len(chunk) - 1 or more) else None)

    seen, cursor, calls = [], -1, 0
    while True:
        payload, cursor_after = page(cursor, 100)
        out, _ = fit_to_budget(payload, "transactions", cursor_after=cursor_after)
        assert count_tokens(out) <= MAX_OUTPUT_TOKENS
        seen += [r["id"] for r in out["transactions"]]
        calls += 1
        if out["next_cursor"] is None:
            break
        cursor = int(out["next_cursor"])
    assert seen == list(range(100)) and calls > 1


def test_the_byte_cap_applies_too():
    payload = {"blob": "a" * (MAX_OUTPUT_BYTES + 1000)}
    out, truncated = fit_to_budget(payload, None, max_tokens=10**7)
    assert truncated and len(out["blob"]) < MAX_OUTPUT_BYTES


def test_what_cannot_be_cut_enough_fails_with_a_clear_error():
    payload = {f"field_{i}": i for i in range(5000)}  # no list, no long string, far over the budget
    with pytest.raises(OutputTooLarge) as info:
        fit_to_budget(payload, None)
    assert "too large" in info.value.message and info.value.decision == "error"


@pytest.mark.parametrize("rows", [2, 40, 90, 180, 540, 3000])
def test_a_list_keeps_the_longest_prefix_that_fits(rows):
    from bench.budget_fit import cells
    from guards.budget import _Cut

    payload = {"cells": cells(rows), "next_cursor": None}
    out, truncated = fit_to_budget(payload, "cells", max_tokens=1500)
    if count_tokens(payload) <= 1500:
        assert not truncated and out is payload
        return
    kept = len(out["cells"])
    assert truncated and out["cells"] == payload["cells"][:kept] and count_tokens(out) <= 1500
    if kept < rows - 1:  # maximal: the same cut one row longer does not fit
        assert count_tokens(_Cut(payload, "cells", 1500, None).with_rows(kept + 1)) > 1500


@pytest.mark.parametrize("guess", [1, 2, 7, 50, 63, 64, 65, 99, 100])
@pytest.mark.parametrize("cut_at", [0, 1, 5, 64, 100])
def test_probing_from_a_guess_finds_what_bisection_finds(guess, cut_at):
    from guards.budget import _largest, _largest_near

    probes: list[int] = []

    def ok(n: int) -> bool:
        probes.append(n)
        return n <= cut_at

    assert _largest_near(ok, 1, 100, guess) == _largest(lambda n: n <= cut_at, 1, 100)
    if guess == cut_at and 1 <= cut_at < 100:
        assert sorted(set(probes)) == [cut_at, cut_at + 1]  # a right guess: it fits, one more does not


def test_a_right_guess_makes_the_row_cut_cheap(monkeypatch):
    import guards.budget as budget
    from bench.budget_fit import cells

    payload = {"cells": cells(540), "next_cursor": None}
    encoded: list[int] = []
    real = budget.count_tokens

    def counting(value):
        text = value if isinstance(value, str) else budget._json(value)
        encoded.append(len(text))
        return real(value)

    monkeypatch.setattr(budget, "count_tokens", counting)
    out, _ = fit_to_budget(payload, "cells")
    # After counting the whole answer once (it does not fit), the cut encodes about three budgets' worth: the rows
    # one by one up to the budget, the guess and the guess plus one; bisecting from half the list took ~12.
    assert encoded[0] == len(budget._json(payload))
    assert sum(encoded[1:]) < 4 * len(budget._json(out))


def test_no_token_is_shorter_than_a_byte_so_bytes_bound_tokens():
    """`fits` skips counting a text of at most `max_tokens` bytes: every ordinary token of the encoding decodes
    to at least one byte, so a text never has more tokens than bytes."""
    from guards.budget import _encoding

    enc = _encoding()
    ordinary = [t for t in range(enc.n_vocab) if t not in enc._special_tokens.values() and t < 100_256]
    assert len(ordinary) == 100_256  # cl100k_base: ids 0 to 100255, then unused ids and the special tokens
    assert min(len(enc.decode_single_token_bytes(t)) for t in ordinary) >= 1
    text = "«data»Ama 0803 123 4567 ₦12,500 🙂 naïve" * 20
    assert count_tokens(text) <= len(text.encode())


def test_the_answer_the_budget_measured_is_not_encoded_again_by_the_trace(monkeypatch):
    """The trace recorder counts the tokens of the answer the budget has just measured: the count is reused (the
    same text gives the same count), not encoded a second time."""
    import guards.budget as budget

    real = budget._encoding()
    encoded: list[int] = []
    count = budget._count

    def counting(text):
        encoded.append(len(text))
        return count(text)

    monkeypatch.setattr(budget, "_count", counting)
    payload = {"disputes": [{"id": i, "note": wrap(f"customer {i} asks about letter {i} " * 4)} for i in range(60)]}
    out, truncated = fit_to_budget(payload, "disputes")
    assert not truncated and len(encoded) == 1  # over 4000 bytes: counted once
    assert count_tokens(out) == len(real.encode(budget._json(out), disallowed_special=()))
    assert len(encoded) == 1  # the recorder's count of the same answer
    assert count_tokens({**out, "extra": 1}) > 0 and len(encoded) == 2  # another text is counted
