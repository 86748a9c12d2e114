"""Writing the audit trail: one append-only, hash-chained row per guarded call (denials and refusals too).

Rows go through the append-only log role (`AuditRepository.append`, which may only EXECUTE audit_append).
A row records who, a keyed digest of the arguments, the decision and reason, what was returned and
redacted, and fixed metadata; never the arguments themselves or an unknown name the caller sent.
"""

from __future__ import annotations

import logging
import time

from guards.call import CallState, args_digest
from stores.postgres.audit import AuditRepository
from stores.postgres.audit_group_commit import GroupCommitAudit
from stores.postgres.models import AuditEntry

log = logging.getLogger("kredete.guards.audit")


class AuditWriter:
    def __init__(self, repository: GroupCommitAudit | AuditRepository | None, *, digest_key: bytes,
                 transport: str) -> None:
        self.repository = repository
        self.digest_key = digest_key
        self.transport = transport

    def entry(self, state: CallState) -> AuditEntry:
        p = state.principal
        key = self.digest_key
        return AuditEntry(
            actor_subject=p.subject if p else "anonymous", actor_role=p.role.value if p else "none",
            actor_user_id=p.user_id if p else None, action=state.tool or "unknown", resource=state.resource,
            args_digest=args_digest(state.arguments, key), decision=state.decision,
            reason=(state.reason or None) and state.reason[:500], rows_returned=state.rows_returned,
            redactions=state.redactions, latency_ms=int((time.perf_counter() - state.started) * 1000),
            request_id=state.request_id,
            metadata={"transport": self.transport, "truncated": state.truncated,
                      "injection_flags": state.injection_flags, "unmasked": state.unmasked,
                      "token_id": p.token_id if p else None, **state.extra,
                      # An unknown tool/resource/prompt name is caller text: only its keyed digest is kept.
                      **({"requested_name_digest": args_digest({"name": state.requested_name}, key)}
                         if state.requested_name is not None else {})},
        )

    async def write(self, state: CallState) -> bool:
        """Append the call's row (awaiting its commit); False when it could not be written in time (the caller
        then fails closed)."""
        if self.repository is None:
            return False
        try:
            await self.repository.append(self.entry(state))
            return True
        except Exception as exc:
            log.error("audit write failed for request %s: %s", state.request_id, type(exc).__name__)
            return False
