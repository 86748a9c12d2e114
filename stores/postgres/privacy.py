"""Data-subject requests in the payments database: who a subject is, what to erase or keep per table, the
record of each request and step, raw scans for `dsr verify`, and the rows of an export.

The erasure policy of every table is data (`TABLE_POLICY`): erase (rows deleted), pseudonymise (rows kept,
personal columns nulled or replaced, the user id stays as a pseudonym nobody can resolve once the key and PII
are gone), keep (no personal column; needed by law or by the books), or none (no user data).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from stores.errors import Conflict, NotFound
from stores.postgres.base import Repository
from stores.postgres.errors import pg_errors

Action = Literal["erase", "pseudonymise", "keep", "none"]

#: table -> (action, why). Every table of the schema is listed (a test keeps it complete).
TABLE_POLICY: dict[str, tuple[Action, str]] = {
    "users": ("pseudonymise", "row kept (wallets, transactions and FX orders reference it): name, email, phone, "
                              "date of birth, address and both blind indexes nulled, status closed, deleted_at set"),
    "kyc_records": ("erase", "identity document numbers and their blind indexes; deleted (the user's key is "
                             "destroyed too, so copies in backups stay unreadable)"),
    "payment_methods": ("pseudonymise", "row kept as status 'erased' (transactions reference it): card/account "
                                        "details, fingerprint, last four digits and label removed"),
    "sessions": ("erase", "IP addresses and user agents of the user's logins; no need once the account is closed"),
    "notification_prefs": ("erase", "contact preferences of a closed account"),
    "coach_assignments": ("erase", "which coach saw the user"),
    "idempotency_keys": ("erase", "operational replay protection (hours); nothing to keep"),
    "leaderboard_optins": ("erase", "the user's opt-in and pseudonymous handle (its board places in Redis go too)"),
    "change_events": ("erase", "cache-invalidation events naming the user (their data and keys)"),
    "change_event_checkpoints": ("none", "consumers' positions"),
    "transactions": ("pseudonymise", "kept 7 years (AML record keeping, accounting): amounts, currencies, "
                                     "corridor, kind, status, times and the KRD reference stay; counterparty name "
                                     "and reference, description and memo (free text with names, phones, "
                                     "identifiers) nulled"),
    "refunds": ("pseudonymise", "kept with their transactions; the free-text reason is replaced"),
    "corridor_day_users": ("keep", "completed remittances per (UTC day, corridor, user): derived from the kept "
                                   "transactions (the distinct-user counts of corridor_volume's k-anonymity rule); "
                                   "the user id (a pseudonym once the PII is gone) and a count, no personal field"),
    "corridor_days": ("none", "per (UTC day, corridor) totals and distinct-user counts; no user id"),
    "ledger_entries": ("keep", "double-entry postings: wallet, amount, direction; no personal field"),
    "wallets": ("keep", "balances derive from the ledger; no personal field"),
    "subscriptions": ("keep", "billing record (plan, price, period); no personal field"),
    "fx_orders": ("keep", "FX trades (amounts, rate, times); no personal field"),
    "stablecoin_transfers": ("keep", "on-chain addresses and transaction hashes are public chain data and the "
                                     "AML travel-rule record: they cannot be erased from the chain itself"),
    "audit_logs": ("keep", "append-only hash chain: a changed row breaks it; rows carry the user id (a pseudonym "
                           "once the PII is gone) and digests, never argument values; archived, then dropped "
                           "after retention"),
    "audit_chain_head": ("none", "the chain's last link"),
    "audit_archive": ("none", "archived audit partitions (object keys, hashes)"),
    "dsr_requests": ("keep", "the proof that the erasure or export happened: ticket, reason, time, counts"),
    "dsr_steps": ("keep", "each step of a request and its counts"),
    "settlements": ("none", "partner settlements, per corridor"),
    "fx_rates": ("none", "market rates"),
    "hedging_positions": ("none", "company positions"),
    "liquidity_pools": ("none", "company pools"),
    "currencies": ("none", "reference data"),
    "corridors": ("none", "reference data"),
    "status_transitions": ("none", "state machines"),
    "seed_progress": ("none", "synthetic-data loader bookkeeping"),
    "alembic_version": ("none", "schema version"),
    "ledger_pending": ("none", "commit-time balance check scratch (empty outside a transaction)"),
    "ledger_check_marker": ("none", "commit-time balance check scratch"),
}

#: Columns of the users row that hold personal data (all nulled by an erasure).
USER_PII_COLUMNS = ("full_name_enc", "email_enc", "phone_enc", "date_of_birth_enc", "address_enc")


@dataclass(frozen=True)
class Subject:
    """What the payments database knows of a data subject before a request."""

    user_id: uuid.UUID
    exists: bool
    country: str | None = None
    status: str | None = None
    deleted_at: datetime | None = None
    legal_hold_at: datetime | None = None
    legal_hold_reason: str | None = None


@dataclass(frozen=True)
class Request:
    id: uuid.UUID
    kind: str
    user_id: uuid.UUID
    ticket: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    steps: dict[str, dict[str, Any]]
    result: dict[str, Any]


class PrivacyRepository(Repository):
    """Service role on the primary (requests and erasures are writes; scans read the primary's snapshot)."""

    def __init__(self, store, **_: Any) -> None:
        super().__init__(store, replica_reads=False)

    # --- subjects -----------------------------------------------------------------------------------
    async def subject(self, user_id: uuid.UUID) -> Subject:
        async with self._read() as conn:
            row = await conn.fetchrow("SELECT country, status::text, deleted_at, legal_hold_at, legal_hold_reason "
                                      "FROM users WHERE id = $1", user_id)
        if row is None:
            return Subject(user_id, False)
        return Subject(user_id, True, row["country"], row["status"], row["deleted_at"], row["legal_hold_at"],
                       row["legal_hold_reason"])

    async def staff_role_of(self, subject: str) -> str | None:
        """The staff role a token subject acted under (audit trail, coach assignments); None if not staff."""
        async with self._read() as conn:
            role = await conn.fetchval(
                "SELECT actor_role FROM audit_logs WHERE actor_subject = $1 AND actor_role <> 'customer' "
                "ORDER BY occurred_at DESC LIMIT 1", subject)
            if role is None and await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM coach_assignments WHERE coach_subject = $1)", subject):
                role = "credit_coach"
        return role

    async def set_legal_hold(self, user_id: uuid.UUID, reason: str | None) -> bool:
        """Put a user under legal hold (reason) or release them (None); False when there is no such user."""
        with pg_errors():
            async with self.store.connection() as conn:
                n = await conn.execute(
                    "UPDATE users SET legal_hold_at = CASE WHEN $2::text IS NULL THEN NULL "
                    "ELSE coalesce(legal_hold_at, now()) END, legal_hold_reason = $2 WHERE id = $1", user_id, reason)
        return n.endswith(" 1")

    # --- requests and steps -------------------------------------------------------------------------
    async def last_erasure(self, user_id: uuid.UUID) -> Request | None:
        """The user's newest erasure request (open or done), with its steps."""
        async with self._read() as conn:
            row = await conn.fetchrow("SELECT * FROM dsr_requests WHERE user_id = $1 AND kind = 'erase' "
                                      "ORDER BY (status <> 'done') DESC, started_at DESC LIMIT 1", user_id)
            return await self._request(conn, row)

    async def _request(self, conn, row) -> Request | None:
        if row is None:
            return None
        steps = {r["step"]: {"status": r["status"], "detail": json.loads(r["detail"]), "error": r["error"],
                             "attempts": r["attempts"], "finished_at": r["finished_at"]}
                 for r in await conn.fetch("SELECT step, status, detail::text, error, attempts, finished_at "
                                           "FROM dsr_steps WHERE request_id = $1", row["id"])}
        return Request(row["id"], row["kind"], row["user_id"], row["ticket"], row["status"], row["started_at"],
                       row["finished_at"], steps, json.loads(row["result"]) if isinstance(row["result"], str)
                       else dict(row["result"] or {}))

    async def open_request(self, kind: str, user_id: uuid.UUID, ticket: str, reason: str, actor: str) -> Request:
        """A new running request (at most one open erasure per user: Conflict if one exists)."""
        rid = uuid.uuid4()
        try:
            with pg_errors():
                async with self.store.connection() as conn:
                    await conn.execute(
                        "INSERT INTO dsr_requests (id, kind, user_id, ticket, reason, actor, status) "
                        "VALUES ($1, $2, $3, $4, $5, $6, 'running')", rid, kind, user_id, ticket, reason, actor)
                    return await self._request(conn, await conn.fetchrow("SELECT * FROM dsr_requests WHERE id = $1",
                                                                         rid))
        except Conflict as exc:
            raise Conflict("an erasure of this user is already open; run it again to continue it",
                           store="postgres") from exc

    async def reopen(self, request_id: uuid.UUID) -> None:
        with pg_errors():
            async with self.store.connection() as conn:
                await conn.execute("UPDATE dsr_requests SET status = 'running', error = NULL, updated_at = now() "
                                   "WHERE id = $1 AND status <> 'done'", request_id)

    async def record_step(self, request_id: uuid.UUID, step: str, status: str, started_at: datetime,
                          detail: dict[str, Any], error: str | None = None) -> None:
        with pg_errors():
            async with self.store.connection() as conn:
                await conn.execute(
                    "INSERT INTO dsr_steps (request_id, step, status, started_at, detail, error) "
                    "VALUES ($1, $2, $3, $4, $5::jsonb, $6) ON CONFLICT (request_id, step) DO UPDATE SET "
                    "status = EXCLUDED.status, detail = EXCLUDED.detail, error = EXCLUDED.error, "
                    "started_at = EXCLUDED.started_at, finished_at = now(), attempts = dsr_steps.attempts + 1",
                    request_id, step, status, started_at, json.dumps(detail, default=str), error)

    async def finish(self, request_id: uuid.UUID, status: str, *, error: str | None = None,
                     result: dict[str, Any] | None = None) -> None:
        with pg_errors():
            async with self.store.connection() as conn:
                await conn.execute(
                    "UPDATE dsr_requests SET status = $2, error = $3, result = coalesce($4::jsonb, result), "
                    "updated_at = now(), finished_at = CASE WHEN $2 = 'done' THEN now() END WHERE id = $1",
                    request_id, status, error, json.dumps(result, default=str) if result is not None else None)

    async def erased_users(self) -> list[uuid.UUID]:
        async with self._read() as conn:
            return [r["user_id"] for r in await conn.fetch(
                "SELECT DISTINCT user_id FROM dsr_requests WHERE kind = 'erase' AND status = 'done'")]

    # --- capture ------------------------------------------------------------------------------------
    async def personal_ciphertexts(self, user_id: uuid.UUID) -> dict[str, Any]:
        """The user's encrypted values with their decryption contexts, and their blind indexes."""
        async with self._read() as conn:
            user = await conn.fetchrow(f"SELECT country, email_bidx, phone_bidx, {', '.join(USER_PII_COLUMNS)} "
                                       "FROM users WHERE id = $1", user_id)
            kyc = await conn.fetch("SELECT id, document_type::text, document_number_enc, document_number_bidx "
                                   "FROM kyc_records WHERE user_id = $1", user_id)
            methods = await conn.fetch("SELECT id, details_enc, fingerprint_bidx FROM payment_methods "
                                       "WHERE user_id = $1 AND details_enc IS NOT NULL", user_id)
            handles = [r["handle"] for r in await conn.fetch(
                "SELECT handle FROM leaderboard_optins WHERE user_id = $1", user_id)]
        if user is None:
            raise NotFound("no such user", store="postgres")
        return {"user": dict(user), "kyc": [dict(r) for r in kyc], "payment_methods": [dict(r) for r in methods],
                "handles": handles}

    # --- erase --------------------------------------------------------------------------------------
    async def erase(self, user_ids: Sequence[uuid.UUID]) -> dict[str, int]:
        """Erase and pseudonymise the users' rows per `TABLE_POLICY`, in one transaction; idempotent (a rerun
        changes nothing and reports zeros). Refuses users under legal hold."""
        ids = list(user_ids)
        out: dict[str, int] = {}

        def n(status: str) -> int:
            return int(status.rsplit(" ", 1)[-1])

        with pg_errors():
            async with self.store.transaction() as conn:
                held = await conn.fetchval("SELECT count(*) FROM users WHERE id = ANY($1) AND legal_hold_at IS NOT "
                                           "NULL", ids)
                if held:
                    raise Conflict(f"{held} of these users are under legal hold", store="postgres")
                out["transactions"] = n(await conn.execute(
                    "UPDATE transactions SET counterparty_name = NULL, counterparty_reference = NULL, "
                    "description = NULL, memo = NULL, updated_at = now() WHERE user_id = ANY($1) AND "
                    "(counterparty_name IS NOT NULL OR counterparty_reference IS NOT NULL OR description IS NOT NULL "
                    "OR memo IS NOT NULL)", ids))
                out["refunds"] = n(await conn.execute(
                    "UPDATE refunds r SET reason = '[erased]' FROM transactions t WHERE t.id = r.transaction_id "
                    "AND t.created_at = r.transaction_created_at AND t.user_id = ANY($1) AND r.reason <> '[erased]'",
                    ids))
                for table in ("kyc_records", "sessions", "notification_prefs", "coach_assignments",
                              "idempotency_keys", "leaderboard_optins", "change_events"):
                    out[table] = n(await conn.execute(f"DELETE FROM {table} WHERE user_id = ANY($1)", ids))
                out["payment_methods"] = n(await conn.execute(
                    "UPDATE payment_methods SET status = 'erased', details_enc = NULL, fingerprint_bidx = NULL, "
                    "last4 = NULL, label = 'erased' WHERE user_id = ANY($1) AND status <> 'erased'", ids))
                nulls = ", ".join(f"{c} = NULL" for c in USER_PII_COLUMNS)
                out["users"] = n(await conn.execute(
                    f"UPDATE users SET {nulls}, email_bidx = NULL, phone_bidx = NULL, status = 'closed', "
                    "deleted_at = coalesce(deleted_at, now()) WHERE id = ANY($1) AND (deleted_at IS NULL OR "
                    f"{' OR '.join(f'{c} IS NOT NULL' for c in USER_PII_COLUMNS)} OR email_bidx IS NOT NULL OR "
                    "phone_bidx IS NOT NULL)", ids))
        return out

    # --- verify: raw scans --------------------------------------------------------------------------
    async def blind_index_hits(self, digests: Sequence[str]) -> dict[str, int]:
        """Rows whose blind index still equals one of these (captured before erasure)."""
        if not digests:
            return {}
        async with self._read() as conn:
            return {
                "users": await conn.fetchval("SELECT count(*) FROM users WHERE email_bidx = ANY($1) OR "
                                             "phone_bidx = ANY($1)", list(digests)),
                "kyc_records": await conn.fetchval("SELECT count(*) FROM kyc_records WHERE document_number_bidx = "
                                                   "ANY($1)", list(digests)),
                "payment_methods": await conn.fetchval("SELECT count(*) FROM payment_methods WHERE "
                                                       "fingerprint_bidx = ANY($1)", list(digests)),
            }

    async def tables(self) -> list[tuple[str, list[str], list[str]]]:
        """(table, uuid columns, text-like columns) of every table (partitioned parents, not their parts)."""
        async with self._read() as conn:
            rows = await conn.fetch("""
                SELECT c.relname AS table, a.attname AS col, format_type(a.atttypid, a.atttypmod) AS type
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
                ORDER BY c.relname, a.attnum""")
        out: dict[str, tuple[list[str], list[str]]] = {}
        for r in rows:
            uuids, texts = out.setdefault(r["table"], ([], []))
            t = r["type"]
            if t == "uuid":
                uuids.append(r["col"])
            elif t in ("text", "jsonb", "json", "inet") or t.startswith(("character", "text")):
                texts.append(r["col"])
            elif t.startswith("USER-DEFINED") or t.endswith("[]"):
                continue
        return [(t, u, x) for t, (u, x) in out.items()]

    async def scan_rows(self, table: str, uuid_cols: Sequence[str], text_cols: Sequence[str], user_id: uuid.UUID,
                        *, batch: int = 5000) -> AsyncIterator[tuple[bool, list[str]]]:
        """(names the user id in a uuid column, the row's text values) for every row that names the user or has
        text at all: the raw material of `dsr verify`."""
        if not uuid_cols and not text_cols:
            return
        id_ref = " OR ".join(f"{_q(c)} = $1" for c in uuid_cols) or "false"
        texts = ", ".join(f"{_q(c)}::text" for c in text_cols) or "NULL::text"
        where = " OR ".join([*(f"{_q(c)} = $1" for c in uuid_cols), *(f"{_q(c)} IS NOT NULL" for c in text_cols)])
        sql = f"SELECT ({id_ref}) AS id_ref, ARRAY[{texts}] AS texts FROM {_q(table)} WHERE {where}"
        with pg_errors():
            async with self.store.connection() as conn, conn.transaction(isolation="repeatable_read",
                                                                         readonly=True):
                args = (user_id,) if uuid_cols else ()
                async for row in conn.cursor(sql, *args, prefetch=batch):
                    yield bool(row["id_ref"]), [t for t in row["texts"] if t]

    # --- export -------------------------------------------------------------------------------------
    async def export_rows(self, user_id: uuid.UUID) -> dict[str, list[dict[str, Any]]]:
        """Every row of the user in the payments database (ciphertexts as stored; the caller decrypts)."""
        queries = {
            "users": "SELECT * FROM users WHERE id = $1",
            "kyc_records": "SELECT * FROM kyc_records WHERE user_id = $1 ORDER BY submitted_at",
            "payment_methods": "SELECT * FROM payment_methods WHERE user_id = $1 ORDER BY created_at",
            "wallets": "SELECT * FROM wallets WHERE user_id = $1 ORDER BY created_at",
            "transactions": "SELECT * FROM transactions WHERE user_id = $1 ORDER BY created_at, id",
            "ledger_entries": "SELECT e.* FROM ledger_entries e JOIN wallets w ON w.id = e.wallet_id "
                              "WHERE w.user_id = $1 ORDER BY e.created_at, e.transaction_id, e.line_no",
            "refunds": "SELECT r.* FROM refunds r JOIN transactions t ON t.id = r.transaction_id AND "
                       "t.created_at = r.transaction_created_at WHERE t.user_id = $1 ORDER BY r.created_at",
            "fx_orders": "SELECT * FROM fx_orders WHERE user_id = $1 ORDER BY created_at",
            "stablecoin_transfers": "SELECT * FROM stablecoin_transfers WHERE user_id = $1 ORDER BY created_at",
            "subscriptions": "SELECT * FROM subscriptions WHERE user_id = $1 ORDER BY started_at",
            "notification_prefs": "SELECT * FROM notification_prefs WHERE user_id = $1 ORDER BY channel, category",
            "sessions": "SELECT * FROM sessions WHERE user_id = $1 ORDER BY created_at",
            "coach_assignments": "SELECT user_id, assigned_at FROM coach_assignments WHERE user_id = $1",
            "leaderboard_optins": "SELECT * FROM leaderboard_optins WHERE user_id = $1",
            "audit_logs": "SELECT id, occurred_at, actor_role, action, resource, decision, rows_returned "
                          "FROM audit_logs WHERE actor_user_id = $1 ORDER BY id",
        }
        out: dict[str, list[dict[str, Any]]] = {}
        async with self._read() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            for name, sql in queries.items():
                out[name] = [dict(r) for r in await conn.fetch(sql, user_id)]
        return out


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
