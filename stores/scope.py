"""Row scope: which users' rows a query may touch. Built from a verified token, never from tool input."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict


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
