"""Guards between outside input (agent tool arguments, API payloads) and MongoDB queries/documents.

Rules:
- dict keys from outside never start with `$` and never contain `.` or NUL (no operator injection,
  no dotted-path surprises), and are strings;
- a value from outside is only ever used in a filter under `$eq` (`eq_filter`), so a string such as
  `{"$ne": null}` or `"$where"` is matched literally instead of being interpreted;
- documents are bounded in size and nesting depth, and hold only finite numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any
from uuid import UUID

import bson

from stores.errors import InvalidData

#: Hard limit of the wire protocol is 16 MiB; documents from agents/tools get a much lower bound.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024 - 16 * 1024
DEFAULT_MAX_INPUT_BYTES = 512 * 1024
MAX_DEPTH = 32

_FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_SCALARS = (str, int, float, bool, UUID, datetime, date, type(None))


def _fail(msg: str) -> InvalidData:
    return InvalidData(msg, store="mongo")


def ensure_safe(value: Any, *, max_depth: int = MAX_DEPTH, _path: str = "$root", _depth: int = 0) -> Any:
    """Return `value` unchanged if no mapping key in it can act as an operator; raise InvalidData otherwise.

    Messages name the path of the offending key (keys are code-like, never row data), not the value.
    """
    if _depth > max_depth:
        raise _fail(f"document nested deeper than {max_depth} levels")
    if isinstance(value, Mapping):
        for key, sub in value.items():
            if not isinstance(key, str):
                raise _fail(f"non-string key at {_path}")
            if key.startswith("$"):
                raise _fail(f"operator-like key {_short(key)!r} at {_path} is not allowed")
            if "." in key or "\x00" in key:
                raise _fail(f"key with '.' or NUL at {_path} is not allowed")
            if key == "":
                raise _fail(f"empty key at {_path}")
            ensure_safe(sub, max_depth=max_depth, _path=f"{_path}.{_short(key)}", _depth=_depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for i, sub in enumerate(value):
            ensure_safe(sub, max_depth=max_depth, _path=f"{_path}[{i}]", _depth=_depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        # Not JSON, and FerretDB refuses infinities and closes the connection on NaN: never writable.
        raise _fail(f"non-finite number at {_path}")
    return value


def _short(key: str) -> str:
    return key if len(key) <= 40 else key[:37] + "..."


def check_field(field: str) -> str:
    """A field name used in a filter must be a plain (dotted) identifier chosen by code."""
    if not _FIELD_RE.match(field):
        raise _fail(f"illegal field name {_short(field)!r}")
    return field


def eq_filter(field: str, value: Any) -> dict[str, dict[str, Any]]:
    """`{field: {"$eq": value}}` for a scalar value that came from outside; mappings/lists are refused."""
    check_field(field)
    if isinstance(value, UUID):
        value = str(value)
    if not isinstance(value, _SCALARS):
        raise _fail(f"filter value for {field!r} must be a scalar, got {type(value).__name__}")
    if isinstance(value, str) and "\x00" in value:
        raise _fail(f"filter value for {field!r} contains NUL")
    return {field: {"$eq": value}}


def in_filter(field: str, values: list[Any]) -> dict[str, dict[str, list[Any]]]:
    """`{field: {"$in": [...]}}` where every element is a scalar (each matched literally)."""
    check_field(field)
    out = []
    for v in values:
        (inner,) = eq_filter(field, v).values()
        out.append(inner["$eq"])
    return {field: {"$in": out}}


def bson_size(doc: Mapping[str, Any]) -> int:
    """Encoded BSON size of a document, in bytes."""
    try:
        return len(bson.encode(doc))
    except (bson.InvalidDocument, OverflowError, TypeError) as exc:
        raise _fail(f"document cannot be encoded as BSON ({type(exc).__name__})") from exc


def check_size(doc: Mapping[str, Any], max_bytes: int = MAX_DOCUMENT_BYTES, *, what: str = "document") -> int:
    """Raise InvalidData when the encoded document is larger than `max_bytes`; return its size."""
    size = bson_size(doc)
    if size > max_bytes:
        raise _fail(f"{what} is {size} bytes, over the limit of {max_bytes} bytes")
    return size


def ensure_safe_document(doc: Mapping[str, Any], max_bytes: int = DEFAULT_MAX_INPUT_BYTES,
                         *, what: str = "document") -> Mapping[str, Any]:
    """Both checks for a document built from outside input."""
    ensure_safe(doc)
    check_size(doc, max_bytes, what=what)
    return doc


def cap_limit(limit: int | None, default: int = 20, maximum: int = 100) -> int:
    """Clamp a caller-supplied page size to 1..maximum."""
    if limit is None:
        return default
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise _fail("limit must be an integer")
    return max(1, min(int(limit), maximum))
