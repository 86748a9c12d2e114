"""What the tool modules share: the input base class and argument types, result picking, render helpers."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

MAX_LIMIT = 100
Cursor = Annotated[str, Field(max_length=512, pattern=r"^[A-Za-z0-9_\-=.]+$",
                              description="Opaque cursor from a previous page's next_cursor.")]
UserId = Annotated[UUID | None, Field(
    description="Staff only: narrow to this user (must be inside your scope). Customers: omit it.")]
Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT, description=f"Page size, 1..{MAX_LIMIT}.")]


class ToolInput(BaseModel):
    """Base of every tool input: its JSON schema is what clients see; unknown arguments are refused, and types
    are strict (`"5"` is not a number, `true` is not a limit). The guard validates the JSON the client sent
    (`guards.pipeline.parse_arguments`), where strict mode still takes ISO 8601 and UUID strings for dates and
    ids: JSON has no such types.

    No input names a principal: scope comes from the verified token (the tool's scope rule). A `user_id` is
    accepted only so staff can narrow to one user inside their scope; for customers it must be omitted or be
    their own.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)


#: Repository field names that differ from the tools' output names.
RENAMES = {"id": "transaction_id", "corridor_id": "corridor"}


def pick(obj: Any, model: type[BaseModel], renames: dict[str, str] | None = None) -> dict[str, Any]:
    """The fields of `model` taken from a repository result (pydantic model or mapping)."""
    data = obj.model_dump() if isinstance(obj, BaseModel) else dict(obj)
    for src, dst in (RENAMES if renames is None else renames).items():
        if src in data and dst not in data:
            data[dst] = data[src]
    return {k: data[k] for k in model.model_fields if k in data}


def only(rows: list[dict[str, Any]], model: type[BaseModel]) -> list[dict[str, Any]]:
    """Each row cut to the fields of `model` (nested documents of a repository result)."""
    keys = model.model_fields.keys()
    return [{k: r.get(k) for k in keys if k in r} for r in rows]


# --- short text renderings next to the structured content (built from the already redacted payload) ---------

#: Minor-unit exponents for display; the structured content keeps exact integers.
_EXPONENT = {"USDC": 6, "USDT": 6}


def money(amount_minor: int | None, currency: str | None) -> str:
    if amount_minor is None or currency is None:
        return "-"
    exp = _EXPONENT.get(currency, 2)
    return f"{currency} {Decimal(amount_minor).scaleb(-exp):,.{min(exp, 2)}f}"


def more(payload: dict[str, Any]) -> str:
    """` (more available: pass next_cursor; <note>)` when the page continues or was cut, else ``."""
    parts = []
    if payload.get("next_cursor"):
        parts.append("more available: pass next_cursor")
    if payload.get("truncated"):
        parts.append(payload.get("note", "output truncated"))
    return f" ({'; '.join(parts)})" if parts else ""
