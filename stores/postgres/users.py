"""Users: profiles (encrypted PII decrypted only inside the adapter), known PII for redaction, coach scope."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from stores.crypto import FieldCipher
from stores.errors import NotFound, StoreConfigError
from stores.postgres.base import Params, Repository, scope_clause
from stores.postgres.models import UserProfile
from stores.scope import RowScope

PUBLIC_COLUMNS = "u.id, u.created_at, u.status, u.country, u.home_currency, u.kyc_level, u.deleted_at"


def pii_context(column: str, user_id: UUID | str) -> str:
    """Associated data of an encrypted users column: binds the ciphertext to its row and column, so a
    ciphertext copied into another row or column does not decrypt."""
    return f"users.{column}|{user_id}"


class UserRepository(Repository):
    def __init__(self, store, *, cipher: FieldCipher | None = None, replica_reads: bool = True) -> None:
        super().__init__(store, replica_reads=replica_reads)
        self.cipher = cipher

    def _decrypt(self, token: str | None, column: str, user_id: UUID) -> str | None:
        if token is None:
            return None
        if self.cipher is None:
            raise StoreConfigError("no field-encryption key configured", store="postgres")
        return self.cipher.decrypt(token, pii_context(column, user_id))

    async def get_profile(self, scope: RowScope, user_id: UUID, *, include_pii: bool = False) -> UserProfile:
        """Non-PII profile from `users_public`; with `include_pii` also name, email and phone, decrypted
        here (needs the key and a role that may read the ciphertexts)."""
        p = Params()
        where = f"u.id = {p.add(user_id, 'uuid')} AND {scope_clause(scope, 'u.id', p)}"
        if include_pii:
            query = (f"SELECT {PUBLIC_COLUMNS}, u.full_name_enc, u.email_enc, u.phone_enc FROM users u "
                     f"WHERE {where}")
        else:
            query = f"SELECT {PUBLIC_COLUMNS} FROM users_public u WHERE {where}"
        async with self._read() as conn:
            row = await conn.fetchrow(query, *p.values)
        if row is None:
            raise NotFound("user not found", store="postgres")
        data = dict(row)
        if include_pii:
            for col in ("full_name", "email", "phone"):
                data[col] = self._decrypt(data.pop(f"{col}_enc"), col, row["id"])
        return UserProfile.model_validate(data)

    async def known_pii(self, user_ids: Sequence[UUID]) -> dict[UUID, dict[str, list[str]]]:
        """Names and addresses of these users, decrypted, for the redaction layer's known-values list.

        `names` holds the full name and each name part of 3+ letters; `addresses` the full address and its
        first line.
        """
        ids = list(dict.fromkeys(user_ids))[:1000]
        async with self._read() as conn:
            rows = await conn.fetch("SELECT id, full_name_enc, address_enc FROM users WHERE id = ANY($1::uuid[])", ids)
        out: dict[UUID, dict[str, list[str]]] = {}
        for r in rows:
            name = self._decrypt(r["full_name_enc"], "full_name", r["id"])
            address = self._decrypt(r["address_enc"], "address", r["id"])
            names = [name, *(part for part in name.replace("-", " ").split() if len(part) >= 3)] if name else []
            lines = [address, address.splitlines()[0].strip()] if address else []
            out[r["id"]] = {"names": list(dict.fromkeys(names)), "addresses": list(dict.fromkeys(lines))}
        return out

    async def not_live(self, user_ids: Sequence[UUID]) -> set[UUID]:
        """Which of these users were erased (`deleted_at` set) or are unknown here (the training export leaves
        their data out)."""
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return set()
        async with self._read() as conn:
            rows = await conn.fetch("SELECT id FROM users_public WHERE id = ANY($1::uuid[]) AND deleted_at IS NULL",
                                    ids)
        return set(ids) - {r["id"] for r in rows}

    async def users_assigned_to(self, coach_subject: str) -> list[UUID]:
        """Users a credit coach may see (the coach's row scope)."""
        async with self._read() as conn:
            rows = await conn.fetch(
                "SELECT user_id FROM coach_assignments WHERE coach_subject = $1 ORDER BY user_id", coach_subject)
        return [r["user_id"] for r in rows]

    async def find_by_email(self, email: str) -> UUID | None:
        """Lookup through the blind index (trimmed, lower-cased): the database never sees the address in clear."""
        return await self._find("email_bidx", self._cipher().blind_index(email, "users.email", "email"))

    async def find_by_phone(self, phone: str, *, region: str | None = None) -> UUID | None:
        """Lookup by phone in any format that names its country (+234 803 ...), or a national one with `region`."""
        return await self._find("phone_bidx", self._cipher().blind_index(phone, "users.phone", "phone",
                                                                         region=region))

    def _cipher(self) -> FieldCipher:
        if self.cipher is None:
            raise StoreConfigError("no field-encryption key configured", store="postgres")
        return self.cipher

    async def _find(self, column: str, digest: str) -> UUID | None:
        async with self._read() as conn:
            return await conn.fetchval(f"SELECT id FROM users WHERE {column} = $1", digest)
