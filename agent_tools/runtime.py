"""Everything a tool call needs at run time: least-privilege store connections, repositories,
principal resolution, row scope, redaction and audit. Built once per server process."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from config.settings import Settings, resolve
from guards.errors import Forbidden, Unauthenticated
from guards.pipeline import CallState, args_digest
from guards.policy import ALL_USERS_ROLES
from guards.principal import Principal, Role
from guards.ratelimit import RateLimiter, RateLimits
from guards.redaction import redact_value, role_policy
from guards.tokens import verify_token
from stores.registry import Stores, build_postgres
from stores.scope import RowScope

log = logging.getLogger("kredete.runtime")


class AgentRuntime:
    """Connections as the agent roles (SELECT-only Postgres, restricted Redis user) plus the audit writer."""

    def __init__(self, settings: Settings | None = None, *, transport: str = "stdio",
                 rate_limits: RateLimits | None = None) -> None:
        self.settings = resolve(settings)
        self.transport = transport
        self.rate_limits = rate_limits or RateLimits()
        self.tool_names: frozenset[str] = frozenset()
        self.input_models: dict[str, type[BaseModel]] = {}
        #: Tools that write (their audit row is written before the write: no write without it).
        self.write_tools: frozenset[str] = frozenset()
        self.rate_limiter: RateLimiter | None = None
        self.stores: Stores | None = None
        self.audit_store = None
        self._digest_key = self.settings.token_signing_key.get_secret_value().encode()
        self._retriever = None

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> AgentRuntime:
        from guards.redaction import require_ner
        from stores.cache import CacheStore

        # Never serve text that cannot be redacted: a NER model that fails to load stops the start here.
        require_ner()
        from stores.mongo import MongoStore
        from stores.postgres.audit import AuditRepository
        from stores.search import SearchStore

        s = self.settings
        pg = build_postgres(s, role="agent")
        audit_pg = build_postgres(s, role="log")
        cache = CacheStore(s.redis_agent_url.get_secret_value(), timeout=s.connect_timeout_s)
        mongo = MongoStore(s.mongo_url.get_secret_value(), s.mongo_db, timeout=s.connect_timeout_s)
        search = SearchStore(s.opensearch_url.get_secret_value(), prefix=s.index_prefix)
        # The server starts even when a store is down: calls that need it fail with a clear error.
        for store in (pg, audit_pg, cache, mongo, search):
            try:
                await store.connect()
            except Exception as exc:
                log.warning("store %s unavailable at start: %s", type(store).__name__, exc)
        self.stores = Stores(postgres=pg, mongo=mongo, cache=cache, search=search, settings=s)
        self.audit_store = audit_pg
        self.audit_repo = AuditRepository(audit_pg)
        self.rate_limiter = (RateLimiter(cache.client, self.rate_limits, own_issuer=s.token_issuer)
                             if cache.client else None)
        self._build_repositories()
        await self._start_logger()
        return self

    def _build_repositories(self) -> None:
        from stores.crypto import FieldCipher
        from stores.mongo.credit import (
            ActionPlanRepository,
            CreditReportRepository,
            DisputeRepository,
            ScoreHistoryRepository,
        )
        from stores.postgres import (
            AnalyticsRepository,
            AuditRepository,
            TransactionRepository,
            UserRepository,
            WalletRepository,
        )

        pg, db = self.stores.postgres, self.stores.mongo
        self.transactions = TransactionRepository(pg)
        self.wallets = WalletRepository(pg)
        self.coaches = UserRepository(pg)
        self.analytics = AnalyticsRepository(pg)
        self.audit_reader = AuditRepository(pg)
        # Only the redaction layer decrypts names and addresses (to find and mask them); the agent role may
        # read just those two ciphertext columns of `users`, and no tool returns them.
        cipher = FieldCipher.from_settings(self.settings)
        self.users = UserRepository(pg, cipher=cipher)
        self.credit_reports = CreditReportRepository(db)
        self.scores = ScoreHistoryRepository(db)
        self.disputes = DisputeRepository(db)
        self.plans = ActionPlanRepository(db)

    async def _start_logger(self) -> None:
        from datetime import timedelta

        from stores.mongo.ai_logging import AILogger
        from stores.mongo.jobs import MaintenanceJobs

        s = self.settings
        self.ai_logger = AILogger(self.stores.mongo, redactor=lambda text: redact_value(text)[0],
                                  retention=timedelta(days=s.log_retention_days))
        await self.ai_logger.start()
        # Retention and outbox reconciliation (FerretDB has no TTL indexes and no transactions).
        try:
            self.mongo_jobs = MaintenanceJobs(self.stores.mongo.db, retention_interval=s.mongo_retention_interval_s,
                                              reconcile_interval=s.outbox_reconcile_interval_s,
                                              reconcile_lookback=s.outbox_reconcile_lookback_s).start()
        except Exception as exc:
            log.warning("credit store jobs not started: %s", type(exc).__name__)

    async def close(self) -> None:
        if getattr(self, "mongo_jobs", None) is not None:
            await self.mongo_jobs.stop()
        if getattr(self, "ai_logger", None) is not None:
            await self.ai_logger.stop()
        if self.stores is not None:
            await self.stores.close()
        if self.audit_store is not None:
            await self.audit_store.close()

    @property
    def retriever(self):
        """Loaded on first use: the embedding model takes seconds to load."""
        if self._retriever is None:
            from retrieval.encoder import SentenceTransformerEncoder
            from retrieval.service import KnowledgeRetriever

            # Query embeddings are cached in Redis (qemb:*) by the retriever.
            self._retriever = KnowledgeRetriever(self.stores, SentenceTransformerEncoder())
        return self._retriever

    async def health(self, timeout_s: float = 2.0) -> dict[str, bool]:
        """One cheap round trip per store the tools use, each bounded by `timeout_s`."""
        import asyncio

        async def pg(store) -> bool:
            async with store.connection() as conn:
                return await conn.fetchval("SELECT 1") == 1

        s = self.stores
        probes = {"postgres": pg(s.postgres), "postgres_audit": pg(self.audit_store), "redis": s.cache.ping(),
                  "mongo": s.mongo.ping(), "opensearch": s.search.health()}

        async def bounded(coro) -> bool:
            try:
                result = await asyncio.wait_for(coro, timeout_s)
            except Exception:
                return False
            return bool(result.get("ok")) if isinstance(result, dict) else bool(result)

        results = await asyncio.gather(*(bounded(c) for c in probes.values()))
        return dict(zip(probes, results, strict=True))

    # --- guard runtime protocol -----------------------------------------------------------------
    async def authenticate(self, ctx: Any) -> Principal:
        """HTTP: the bearer token the SDK verified for this request. stdio: KREDETE_TOKEN, checked per call."""
        if self.transport == "stdio":
            return verify_token(os.environ.get("KREDETE_TOKEN"), settings=self.settings)
        from mcp.server.auth.middleware.auth_context import get_access_token

        access = get_access_token()
        if access is None:
            user = getattr(getattr(ctx, "request", None), "scope", {}).get("user")
            access = getattr(user, "access_token", None)
        if access is None:
            raise Unauthenticated()
        # Re-verify: the token may have expired since the HTTP layer accepted the request.
        return verify_token(access.token, settings=self.settings)

    async def rate_limit(self, principal: Principal, tool: str) -> str:
        """"counted" or "exempt" (KREDETE_RATE_LIMIT_EXEMPT_SUBJECTS); raises RateLimited past the limit."""
        if self.rate_limiter is None:
            from guards.errors import Unavailable

            raise Unavailable()
        return await self.rate_limiter.check(principal, tool)

    async def audit(self, state: CallState) -> bool:
        """One append-only audit row per call; False when it could not be written."""
        import time

        from stores.postgres.audit import AuditEntry

        p = state.principal
        entry = AuditEntry(
            actor_subject=p.subject if p else "anonymous", actor_role=p.role.value if p else "none",
            actor_user_id=p.user_id if p else None, action=state.tool or "unknown", resource=state.resource,
            args_digest=args_digest(state.arguments, self._digest_key), decision=state.decision,
            reason=(state.reason or None) and state.reason[:500], rows_returned=state.rows_returned,
            redactions=state.redactions, latency_ms=int((time.perf_counter() - state.started) * 1000),
            request_id=state.request_id,
            metadata={"transport": self.transport, "truncated": state.truncated,
                      "injection_flags": state.injection_flags, "unmasked": state.unmasked,
                      "token_id": p.token_id if p else None, **state.extra,
                      # An unknown tool/resource/prompt name is caller text: only its keyed digest is kept.
                      **({"requested_name_digest": args_digest({"name": state.requested_name}, self._digest_key)}
                         if state.requested_name is not None else {})},
        )
        try:
            await self.audit_repo.append(entry)
            return True
        except Exception as exc:
            log.error("audit write failed for request %s: %s", state.request_id, type(exc).__name__)
            return False

    # --- scope and redaction --------------------------------------------------------------------
    async def scope_for(self, principal: Principal, requested_user: UUID | None = None) -> RowScope:
        """The rows this principal may see, narrowed to `requested_user` when given.

        Customers are bound to the token's user id (an argument naming anyone else is refused);
        coaches to their assignments; support agents to everyone.
        """
        if principal.role is Role.CUSTOMER:
            if requested_user is not None and requested_user != principal.user_id:
                raise Forbidden("customers can only read their own records")
            return RowScope.users(principal.user_id)
        if principal.role in ALL_USERS_ROLES:
            return RowScope.users(requested_user) if requested_user else RowScope.everyone()
        if principal.role is Role.CREDIT_COACH:
            assigned = set(await self.coaches.users_assigned_to(principal.subject))
            if requested_user is not None:
                if requested_user not in assigned:
                    raise Forbidden("this user is not assigned to you")
                return RowScope.users(requested_user)
            return RowScope(user_ids=frozenset(assigned))
        return RowScope.none()

    @staticmethod
    def reveal_grant(principal: Principal, reason: str | None):
        """The only issuer of grants to decrypt credit-store PII: a compliance officer with a stated reason,
        which is recorded in the call's audit row."""
        from guards.errors import BadInput
        from guards.pipeline import current_call
        from guards.policy import check_unmask_reason
        from stores.mongo.reveal import RevealGrant

        if principal.role is not Role.COMPLIANCE_OFFICER:
            raise Forbidden("only compliance officers may see decrypted identifiers")
        try:  # the same structured reason (ticket + purpose) as any unmasked read
            stated = check_unmask_reason(reason or "")[:500]
        except ValueError as exc:
            raise BadInput(f"invalid arguments: revealing identifiers needs a structured reason ({exc})") from None
        state = current_call.get()
        if state is not None:
            state.unmasked = True
            state.reason = f"reveal: {stated}"[:500]
        return RevealGrant(role=principal.role.value, subject=principal.subject, reason=stated)

    async def redact_payload(self, payload: dict[str, Any], principal: Principal, state: CallState,
                             *, unmasked: bool = False) -> dict[str, Any]:
        """Redact every string in the payload with the role's policy and the names known for the users in it."""
        user_ids = _collect_user_ids(payload)
        if principal.user_id:
            user_ids.add(principal.user_id)
        known: dict[UUID, dict[str, list[str]]] = {}
        if user_ids:
            try:
                known = await self.users.known_pii(sorted(user_ids))
            except Exception as exc:  # redaction still runs on recognisers alone; never skipped
                log.warning("known PII lookup failed: %s", type(exc).__name__)
        names, addresses, allow = [], [], []
        for uid, pii in known.items():
            if principal.role is Role.CUSTOMER and uid == principal.user_id:
                allow.extend(pii.get("names", []))
                continue
            names.extend(pii.get("names", []))
            addresses.extend(pii.get("addresses", []))
        policy = role_policy(principal.role.value, unmasked=unmasked, hash_key=self._digest_key)
        redacted, counts = redact_value(payload, policy, known_names=names, known_addresses=addresses,
                                        allow_names=allow)
        for kind, n in counts.items():
            state.redactions[kind] = state.redactions.get(kind, 0) + n
        state.unmasked = unmasked
        return redacted


def _collect_user_ids(value: Any) -> set[UUID]:
    found: set[UUID] = set()

    def walk(v: Any, key: str | None) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, k)
        elif isinstance(v, list):
            for x in v:
                walk(x, key)
        elif key in ("user_id", "counterparty_user_id") and isinstance(v, str):
            with contextlib.suppress(ValueError):
                found.add(UUID(v))

    walk(value, None)
    return found
