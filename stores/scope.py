"""Scopes a store query runs under, built from a verified token, never from tool input: `RowScope` (which
users' rows a query may touch) and `AuditScope` (the audit trail, compliance officers only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from stores.errors import ScopeRefused

#: The one role whose principals may read the audit trail (the guards decide who that is; the stores re-check).
COMPLIANCE_ROLE = "compliance_officer"


class RowScope(BaseModel):
    """`all_users=True` lifts the user filter (staff roles); otherwise only `user_ids` are visible.

    An empty `user_ids` with `all_users=False` matches nothing: deny by default.
    """

    model_config = ConfigDict(frozen=True)

    all_users: bool = False
    user_ids: frozenset[UUID] = frozenset()

    @classmethod
    def none(cls) -> RowScope:
        return cls()

    @classmethod
    def users(cls, *ids: UUID | str) -> RowScope:
        return cls(user_ids=frozenset(UUID(str(i)) for i in ids))

    @classmethod
    def everyone(cls) -> RowScope:
        return cls(all_users=True)

    def single_user(self) -> UUID | None:
        """The one user this scope covers, if it covers exactly one (a read can then target that user)."""
        return next(iter(self.user_ids)) if not self.all_users and len(self.user_ids) == 1 else None

    def allows(self, user_id: UUID | str) -> bool:
        return self.all_users or UUID(str(user_id)) in self.user_ids

    def sql_ids(self) -> list[UUID] | None:
        """For `WHERE ($n::uuid[] IS NULL OR user_id = ANY($n))`: None means every user."""
        return None if self.all_users else sorted(self.user_ids)

    def mongo_filter(self, field: str = "user_id") -> dict:
        """A Mongo filter fragment; user ids are stored as their string form."""
        if self.all_users:
            return {}
        ids = sorted(str(u) for u in self.user_ids)
        # One user: plain equality, which servers push down to their index (FerretDB does not push `$in`).
        return {field: {"$eq": ids[0]}} if len(ids) == 1 else {field: {"$in": ids}}


@dataclass(frozen=True)
class AuditScope:
    """The only scope the audit trail (its search index) is read under: a compliance officer's (every row).

    Built from the verified principal (`AuditScope.of`); any other role is refused, and a RowScope, whatever
    it covers, never opens the audit trail.
    """

    role: str
    subject: str

    def __post_init__(self) -> None:
        if self.role != COMPLIANCE_ROLE:
            raise ScopeRefused(f"audit logs are searchable only by {COMPLIANCE_ROLE}, not {self.role!r}")

    @property
    def rows(self) -> RowScope:
        """The audit trail's rows in the database: every actor's (the audit table is read under this scope)."""
        return RowScope.everyone()

    @classmethod
    def of(cls, principal: Any) -> AuditScope:
        """From a principal (anything with `.role` and `.subject`: stores do not import the guards)."""
        role = getattr(principal.role, "value", principal.role)
        return cls(role=str(role), subject=str(principal.subject))
