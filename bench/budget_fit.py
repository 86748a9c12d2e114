"""Cutting a list answer to the token budget (guards/budget.py): the row search probing from a guess made of each
row's own token count, against bisecting the whole list (the search before it), on the same payloads.

    python -m bench.budget_fit [--rounds 30]

Payloads: corridor_volume-shaped cells (the answer that outgrows the budget as users grow: issue 20's scale run
showed all 180 cells of a month at 100k users, and the cut's re-encoding was most of that call), 90 to 1,080
rows. Per size: median ms of `fit_to_budget`, characters handed to tiktoken, and the rows kept (the same for
both: the test suite checks the two searches agree). Results: bench/results/budget_fit.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import guards.budget as budget  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "budget_fit.json"
SIZES = (90, 180, 360, 540, 1080)


def cells(n: int) -> list[dict]:
    """Rows shaped like corridor_volume's cells."""
    names = ("MX", "PH", "IN", "NG", "GH", "KE")
    return [{"day": f"2025-06-{1 + i % 30:02d}", "corridor": f"US-{names[i % 6]}",
             "currency_pair": f"USD/{names[i % 6]}X", "transactions": 17 + i * 7 % 300, "users": 11 + i % 90,
             "volume": f"{1234.5 + i * 97.25:.2f}"} for i in range(n)]


@contextmanager
def bisecting():
    """The search before the guess: bisect [1, rows - 1] from the middle."""
    near, guess = budget._largest_near, budget._rows_guess
    budget._largest_near = lambda ok, lo, hi, _guess: budget._largest(ok, lo, hi)
    budget._rows_guess = lambda cut, items, max_tokens: 1
    try:
        yield
    finally:
        budget._largest_near, budget._rows_guess = near, guess


@contextmanager
def counting(into: list[int]):
    real = budget.count_tokens

    def count(value):
        into.append(len(value if isinstance(value, str) else budget._json(value)))
        return real(value)

    budget.count_tokens = count
    try:
        yield
    finally:
        budget.count_tokens = real


def encoded(payload: dict) -> tuple[int, int, int]:
    """(characters handed to tiktoken, encodes, rows kept) of one cut."""
    chars: list[int] = []
    with counting(chars):
        out, _ = budget.fit_to_budget(payload, "cells")
    return sum(chars), len(chars), len(out["cells"])


def timed(payload: dict) -> float:
    t = time.perf_counter()
    budget.fit_to_budget(payload, "cells")
    return (time.perf_counter() - t) * 1000


def compare(payload: dict, rounds: int) -> dict[str, dict]:
    """Both searches on one payload, timed in alternation (a busy neighbour slows both alike)."""
    out: dict[str, dict] = {}
    times: dict[str, list[float]] = {"bisect": [], "guess": []}
    with bisecting():
        out["bisect"] = dict(zip(("chars_encoded", "encodes", "rows_kept"), encoded(payload), strict=True))
    out["guess"] = dict(zip(("chars_encoded", "encodes", "rows_kept"), encoded(payload), strict=True))
    for _ in range(rounds):
        with bisecting():
            times["bisect"].append(timed(payload))
        times["guess"].append(timed(payload))
    for name, t in times.items():
        out[name]["ms_p50"] = round(statistics.median(t), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    budget.count_tokens("warm up")
    rows = []
    for n in SIZES:
        payload = {"cells": cells(n), "next_cursor": None}
        both = compare(payload, args.rounds)
        before, after = both["bisect"], both["guess"]
        assert before["rows_kept"] == after["rows_kept"]
        rows.append({"rows": n, **both,
                     "speedup": round(before["ms_p50"] / after["ms_p50"], 2) if after["ms_p50"] else None})
        print(f"{n:5d} rows: bisect {before['ms_p50']:7.2f} ms ({before['chars_encoded']:7d} chars) | guess "
              f"{after['ms_p50']:7.2f} ms ({after['chars_encoded']:7d} chars) | kept {after['rows_kept']}")
    RESULTS.write_text(json.dumps({"run": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                   "load_avg": os.getloadavg(), "rounds": args.rounds,
                                   "max_tokens": budget.MAX_OUTPUT_TOKENS, "sizes": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
