"""Idempotency keys for retryable writes: the first request with a key wins, inside its transaction."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from stores.errors import Conflict, InvalidData
from stores.postgres.errors import pg_errors


def request_hash(operation: str, body: dict[str, object]) -> str:
    """Digest of the canonical request body: same body, same hash, whatever the key order."""
    canonical = json.dumps({"op": operation, "body": body}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Claim:
    """`replay` is True when the key was used before with the same body; `resource_id` is what it made."""

    resource_id: UUID
    replay: bool


class IdempotencyRepository:
    @staticmethod
    async def claim(conn: asyncpg.Connection, *, user_id: UUID, key: str, operation: str, body_hash: str,
                    resource_id: UUID) -> Claim:
        """Record the key for `resource_id`, or return what an earlier request with the key made.

        Must run inside the business operation's transaction: if the operation fails, the key is released
        with it. A concurrent request with the same key waits on the unique index until the first commits.
        """
        if not (8 <= len(key) <= 200):
            raise InvalidData("idempotency key must be 8 to 200 characters", store="postgres")
        with pg_errors():
            inserted = await conn.fetchval(
                "INSERT INTO idempotency_keys (user_id, key, operation, request_hash, resource_id) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, key) DO NOTHING RETURNING resource_id",
                user_id, key, operation, body_hash, resource_id)
            if inserted is not None:
                return Claim(resource_id=inserted, replay=False)
            row = await conn.fetchrow(
                "SELECT operation, request_hash, resource_id FROM idempotency_keys WHERE user_id = $1 AND key = $2",
                user_id, key)
        if row is None:  # the other holder rolled back between our insert and read: extremely rare
            raise Conflict("idempotency key is in use by a concurrent request; retry", store="postgres")
        if row["operation"] != operation or row["request_hash"] != body_hash:
            raise Conflict("idempotency key was already used with a different request", store="postgres")
        return Claim(resource_id=row["resource_id"], replay=True)
