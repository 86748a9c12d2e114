"""Opaque keyset cursors, bound to the query that made them: a position plus a digest of the query's filters
and scope. A cursor given back with other filters or another scope is refused (`InvalidData`); it carries a
position only, so a forged one cannot widen what the caller's scope shows."""

from __future__ import annotations

import base64
import hashlib
import json

from stores.errors import InvalidData


def query_digest(scope: object, filters: dict[str, object]) -> str:
    """Digest of a query (its filters, JSON-comparable) and of the scope it ran in."""
    key = json.dumps({"scope": scope, "f": filters}, sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def encode_position(position: dict[str, str], digest: str) -> str:
    raw = json.dumps({**position, "q": digest}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_position(cursor: str, digest: str) -> dict[str, str]:
    """The position in a cursor made by the query with this digest (raises `InvalidData` otherwise); the
    caller parses its fields (a `ValueError`/`KeyError`/`TypeError` there means a malformed cursor)."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        same_query = data["q"] == digest
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidData("malformed cursor", store="postgres") from exc
    if not same_query:
        raise InvalidData("the cursor belongs to a different query", store="postgres")
    return data
