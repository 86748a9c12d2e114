"""Walking a tool's output payload (nested dicts and lists from `model_dump(mode="json")`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def map_strings(value: Any, fn: Callable[[str | None, str], str]) -> Any:
    """A copy of `value` with `fn(key, text)` applied to every string. `key` is the field the string sits under
    (a list's items keep their list's field; None at the top). Dict keys are ours and are left alone."""

    def walk(v: Any, key: str | None) -> Any:
        if isinstance(v, dict):
            return {k: walk(x, k) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x, key) for x in v]
        if isinstance(v, str):
            return fn(key, v)
        return v

    return walk(value, None)
