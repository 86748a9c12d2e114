"""Master-key rotation of the encrypted PII columns: re-wrap every `enc1` data key under the current master key.

`enc2` tokens (per-user data keys) carry no wrapped key: their keys are re-wrapped in the key store
(`stores.keys.KeyStore.rewrap`), and the columns are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from stores.crypto import FieldCipher
from stores.postgres.base import Repository
from stores.postgres.errors import pg_errors

#: Every column holding `enc1.` tokens, per table (keyed by `id`).
ENCRYPTED_COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("full_name_enc", "email_enc", "phone_enc", "date_of_birth_enc", "address_enc"),
    "kyc_records": ("document_number_enc",),
    "payment_methods": ("details_enc",),
}


@dataclass(frozen=True)
class RotationReport:
    table: str
    rewrapped: int  # rows changed now
    remaining: int  # rows still holding a token of another key (0 after a complete run)


def _stale(columns: tuple[str, ...]) -> str:
    """Rows with an `enc1` token of a key other than $1 (split_part: no LIKE wildcards in key ids)."""
    return "(" + " OR ".join(f"(left({c}, 5) = 'enc1.' AND split_part({c}, '.', 2) <> $1)" for c in columns) + ")"


class KeyRotationRepository(Repository):
    async def stale_rows(self, key_id: str) -> dict[str, int]:
        """Per table, how many rows hold a token not wrapped by `key_id`."""
        async with self._read(replica=False) as conn:
            return {t: await conn.fetchval(f"SELECT count(*) FROM {t} WHERE {_stale(cols)}", key_id)
                    for t, cols in ENCRYPTED_COLUMNS.items()}

    async def rewrap_all(self, cipher: FieldCipher, *, batch: int = 500) -> list[RotationReport]:
        """Re-wrap old-key tokens with `cipher`'s current key, `batch` rows per transaction (rows locked while
        rewritten, so a concurrent update is neither lost nor overwritten). Bodies are unchanged: nothing is
        decrypted, and a retry after an interruption continues where it stopped."""
        reports = []
        for table, cols in ENCRYPTED_COLUMNS.items():
            done, after = 0, None
            while True:
                with pg_errors():
                    async with self.store.transaction() as conn:
                        rows = await conn.fetch(
                            f"SELECT id, {', '.join(cols)} FROM {table} WHERE {_stale(cols)} "
                            "AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3 FOR UPDATE", cipher.key_id,
                            after, batch)
                        if not rows:
                            break
                        sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(cols))
                        await conn.executemany(f"UPDATE {table} SET {sets} WHERE id = $1", [
                            (r["id"], *(cipher.rewrap(r[c]) if r[c] and r[c].startswith("enc1.") else r[c]
                                          for c in cols)) for r in rows])
                done, after = done + len(rows), rows[-1]["id"]
            reports.append(RotationReport(table, done, 0))
        remaining = await self.stale_rows(cipher.key_id)
        return [RotationReport(r.table, r.rewrapped, remaining[r.table]) for r in reports]
