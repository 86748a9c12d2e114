"""Cap a tool's output to a token budget measured with tiktoken, truncating lists with a note."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

MAX_OUTPUT_TOKENS = 4000
MAX_OUTPUT_BYTES = 256 * 1024


@lru_cache(maxsize=1)
def _encoding():
    from retrieval.tokens import get_encoding

    return get_encoding()


def count_tokens(value: Any) -> int:
    text = value if isinstance(value, str) else json.dumps(value, default=str, separators=(",", ":"))
    return len(_encoding().encode(text, disallowed_special=()))


def fit_to_budget(
    payload: dict[str, Any], list_field: str | None, *, max_tokens: int = MAX_OUTPUT_TOKENS
) -> tuple[dict[str, Any], bool]:
    """Drop items from the end of `payload[list_field]` until the whole payload fits.

    Returns the payload and whether it was truncated; a truncated payload carries `truncated=True`
    and a `note` telling the agent how to get the rest (narrower filters or the cursor).
    """
    if count_tokens(payload) <= max_tokens and len(json.dumps(payload, default=str)) <= MAX_OUTPUT_BYTES:
        return payload, False
    items = list(payload.get(list_field) or []) if list_field else []
    if not items:
        # A single record too large for the budget: cut its longest strings.
        return _shrink_strings(payload, max_tokens), True
    lo, hi = 0, len(items)
    while lo < hi:  # largest prefix that fits
        mid = (lo + hi + 1) // 2
        trial = {**payload, list_field: items[:mid]}
        if count_tokens(trial) <= max_tokens - 60:
            lo = mid
        else:
            hi = mid - 1
    out = {
        **payload,
        list_field: items[:lo],
        "truncated": True,
        "note": f"output capped at {max_tokens} tokens: {lo} of {len(items)} items shown; "
        "narrow the filters or lower the limit",
    }
    if lo < len(items) and not payload.get("next_cursor") and lo > 0:
        out["note"] += "; the remaining items are not reachable by cursor from here, repeat with a smaller limit"
    return out, True


def _shrink_strings(value: Any, max_tokens: int) -> Any:
    budget_chars = max_tokens * 3

    def walk(v: Any) -> Any:
        if isinstance(v, str) and len(v) > 500:
            return v[:500] + " …[truncated]"
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    out = walk(value)
    text = json.dumps(out, default=str)
    if len(text) > budget_chars and isinstance(out, dict):
        out = {**out, "truncated": True}
    return out
