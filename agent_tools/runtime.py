"""One MCP server process: its store adapters (least-privilege roles, from `stores.registry`), the tools'
repositories, the AI logger and credit-store jobs, and its guards (`gate`). Built once, started once.

The guards (authentication, rate limits, grants, scope rules, redaction, audit) live in `guards/`; this module
only wires them to the adapters and hands each tool call its typed `ToolContext`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from agent_tools.context import ToolContext
from agent_tools.flags import FlagReader
from agent_tools.registry import TOOLS
from agent_tools.repositories import Repositories
from agent_tools.spec import ToolSpec
from config.settings import Settings, resolve
from guards.access import AccessSources
from guards.audit import AuditWriter
from guards.bearer import Authenticator
from guards.call import CallState
from guards.gate import Gate
from guards.known_pii import KnownPiiCache
from guards.output_redaction import OutputRedactor
from guards.ratelimit import RateLimiter, RateLimits
from guards.redaction import redact, redact_value, require_ner
from retrieval.search_sync_jobs import SearchSyncJobs
from services.wiring import ServiceSet, start_services
from stores.cache.pubsub import InvalidationSubscriber
from stores.crypto import FieldCipher
from stores.errors import StoreConfigError, StoreUnavailable
from stores.local_queue import default_queue_dir
from stores.mongo.ai_logging import AILogger
from stores.mongo.jobs import MaintenanceJobs
from stores.postgres import AuditRepository, PostgresStore, UserRepository
from stores.postgres.audit_group_commit import GroupCommitAudit
from stores.postgres.pool import call_sessions, calls
from stores.registry import Stores, connect_agent

if TYPE_CHECKING:
    from retrieval.service import KnowledgeRetriever

log = logging.getLogger("kredete.runtime")


class _Deferred:
    """Coach assignments, conversation owners and known PII through the repositories (built on first use)."""

    def __init__(self, repos: Repositories) -> None:
        self._repos = repos

    async def users_assigned_to(self, subject: str) -> list[UUID]:
        return await self._repos.assignments.users_assigned_to(subject)

    async def known_pii(self, user_ids: list[UUID]) -> dict[UUID, dict[str, list[str]]]:
        return await self._repos.known_pii.known_pii(user_ids)

    async def claim(self, conversation_id: str, owner: str, *, user_id: str) -> bool:
        return await self._repos.conversations.claim(conversation_id, owner, user_id=user_id)


class _LatestPii:
    """Known PII read on the primary, for the copies a process keeps: a replica may not have applied the change
    an invalidation announced yet."""

    def __init__(self, repos: Repositories) -> None:
        self._repos = repos
        self._users: UserRepository | None = None

    async def known_pii(self, user_ids: list[UUID]) -> dict[UUID, dict[str, list[str]]]:
        if self._users is None:
            repo = self._repos.known_pii
            self._users = UserRepository(repo.store, cipher=repo.cipher, replica_reads=False)
        return await self._users.known_pii(user_ids)


class AgentRuntime:
    def __init__(self, settings: Settings | None = None, *, transport: Literal["stdio", "http"] = "stdio",
                 rate_limits: RateLimits | None = None, tools: Iterable[ToolSpec] | None = None) -> None:
        self.settings = resolve(settings)
        self.transport = transport
        self.rate_limits = rate_limits or RateLimits()
        self.tools: tuple[ToolSpec, ...] = tuple(tools) if tools is not None else TOOLS
        self.stores: Stores | None = None
        self.repos: Repositories | None = None
        self.gate: Gate | None = None
        self.ai_logger: AILogger | None = None
        self.mongo_jobs: MaintenanceJobs | None = None
        self.search_jobs: SearchSyncJobs | None = None
        self.services: ServiceSet | None = None
        self.flags = FlagReader()
        self._services_retry: asyncio.Task | None = None
        self.tracer: Any = None
        self._retriever: KnowledgeRetriever | None = None
        #: The known PII the output redactor looks up, kept per process while `_pii_follower` is subscribed.
        self.known_pii: KnownPiiCache | None = None
        self._pii_follower: InvalidationSubscriber | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> AgentRuntime:
        """Connect the agent's adapters (the server starts even when a store is down: calls that need it fail
        with a clear error), wire the guards, start the services (cache, flags), the AI logger, the credit-store
        and search-sync jobs."""
        # Never serve text that cannot be redacted: a NER model that fails to load stops the start here.
        require_ner()
        self.wire(await connect_agent(self.settings))
        try:
            await self.start_services()
        except Exception as exc:  # a store down at start (the credit store): retried in the background
            log.warning("services not started yet: %s", type(exc).__name__)
            self._services_retry = asyncio.create_task(self._retry_services(), name="start-services")
        await self._start_logger()
        await self.follow_pii_invalidations()
        # The search indexes the tools read (the audit log) stay in sync while the server runs.
        s = self.settings
        self.search_jobs = SearchSyncJobs(self.stores.search, self.stores.postgres, redact=redact,
                                          interval=s.search_sync_interval_s, lag=s.search_sync_lag_s).start()
        return self

    def wire(self, stores: Stores, *, cipher: FieldCipher | None = None) -> AgentRuntime:
        """Repositories and guards on these adapters (`start` connects them; tests hand in their own)."""
        s = self.settings
        key = s.token_signing_key.get_secret_value().encode()
        self.stores = stores
        self.repos = Repositories(stores, settings=s, cipher=cipher)
        deferred = _Deferred(self.repos)
        # Served from the process's copy only while `follow_pii_invalidations` is subscribed (never before start).
        self.known_pii = KnownPiiCache(deferred, latest=_LatestPii(self.repos), live=self._pii_followed)
        cache = stores.cache
        # Always a limiter: with Redis down (or never reached) it decides in the process, degraded, rather
        # than every call being refused.
        limiter = RateLimiter(cache, self.rate_limits,
                              own_issuer=s.token_issuer)
        # Group commit: the rows of concurrent calls share one insert and one commit (fail closed after the bound).
        audit_repo = (GroupCommitAudit(AuditRepository(stores.audit), timeout_s=s.audit_timeout_s,
                                       max_batch=s.audit_max_batch) if stores.audit is not None else None)
        self.gate = Gate(self.tools, authenticator=Authenticator(self.transport, s), rate_limiter=limiter,
                         audit=AuditWriter(audit_repo, digest_key=key, transport=self.transport,
                                           queue=default_queue_dir() / "audit.sqlite",
                                           target=f"audit:{s.postgres_db}"),
                         redactor=OutputRedactor(self.known_pii, hash_key=key),
                         access=AccessSources(assignments=deferred, min_cell_size=s.aggregate_min_cell_size,
                                              conversations=deferred),
                         switches=self.flags)
        # Each tool call's PostgreSQL sessions are recorded (backend pid, when) for its audit row.
        self.gate.session_scope, self.gate.call_sessions = calls, call_sessions
        return self

    def _pii_followed(self) -> bool:
        return self._pii_follower is not None and self._pii_follower.connected.is_set()

    async def follow_pii_invalidations(self) -> None:
        """Keep known PII per process while subscribed to the invalidation channel: a message naming a user
        drops their copy; every (re)connection and disconnection drops all (no Redis: no copies kept)."""
        if self.stores.cache is None or self.known_pii is None or self._pii_follower is not None:
            return
        cache = self.known_pii
        self._pii_follower = InvalidationSubscriber(self.stores.cache, on_keys=cache.drop_keys, on_reset=cache.clear)
        try:
            await self._pii_follower.start(wait_s=2)
        except Exception as exc:  # it keeps trying on its own; lookups go to PostgreSQL meanwhile
            log.warning("known-PII invalidations not followed yet: %s", type(exc).__name__)

    async def start_services(self) -> ServiceSet:
        """The services the tools read through (cache-aside over the agent's connections: SELECT-only Postgres,
        the `agent` Redis user) and the feature-flag provider the guards and tools evaluate. A Redis that is
        down leaves the cache bypassed and the flags on their code defaults until it answers."""
        if self.services is None:
            mongo = self.stores.mongo
            if mongo is not None and mongo.client is None:  # before anything starts that would then leak
                raise StoreUnavailable("the credit store is not connected", store="mongo")
            self.services = await start_services(self.stores, self.settings, flag_domain=self.flags.domain)
        return self.services

    async def _retry_services(self, every_s: float = 5.0) -> None:
        while self.services is None:
            await asyncio.sleep(every_s)
            with contextlib.suppress(Exception):
                await self.start_services()

    def _erased_lookup(self):
        """Erased users by the key store's tombstones (records queued before an erasure are dropped on drain);
        None when no key store is configured here."""
        try:
            keys = self.repos.cipher.keys  # the process's one key store (documents and known PII use it too)
        except StoreConfigError:
            return None
        return None if keys is None else (lambda ids: keys.destroyed(ids).keys())

    async def _start_logger(self) -> None:
        s = self.settings
        await self.gate.audit_writer.start()  # audit rows an earlier process deferred
        self.ai_logger = AILogger(self.stores.mongo, redactor=lambda text: redact_value(text)[0],
                                  retention=timedelta(days=s.log_retention_days), erased=self._erased_lookup())
        await self.ai_logger.start()
        if s.traces_enabled:
            await self.start_traces()
        # Retention and outbox reconciliation (FerretDB has no TTL indexes and no transactions).
        try:
            self.mongo_jobs = MaintenanceJobs(self.stores.mongo.db, retention_interval=s.mongo_retention_interval_s,
                                              reconcile_interval=s.outbox_reconcile_interval_s,
                                              reconcile_lookback=s.outbox_reconcile_lookback_s).start()
        except Exception as exc:
            log.warning("credit store jobs not started: %s", type(exc).__name__)

    async def start_traces(self) -> None:
        """Every call becomes an observation of a trace (`guards.tracing`), written through the AI logger."""
        from agent_tools.tracing import start_recorder

        self.tracer = await start_recorder(self)

    async def close(self) -> None:
        if self._services_retry is not None:
            self._services_retry.cancel()
        if self.search_jobs is not None:
            await self.search_jobs.stop()
        if self.mongo_jobs is not None:
            await self.mongo_jobs.stop()
        if self.tracer is not None:  # before the logger: what it drains goes to the logger's buffer
            await self.tracer.stop()
        if self.ai_logger is not None:
            await self.ai_logger.stop()
        if self.services is not None:
            await self.services.close()
            self.services = None
        if self._pii_follower is not None:
            await self._pii_follower.stop()
            self._pii_follower = None
        if self.repos is not None:
            await self.repos.close()
        if self.gate is not None:
            await self.gate.audit_writer.close()
        if self.stores is not None:
            await self.stores.close()

    # --- per call -------------------------------------------------------------------------------
    def context(self, state: CallState, scope: Any) -> ToolContext[Any]:
        """The typed context of one tool call, with the scope the guard resolved."""
        return ToolContext(principal=state.principal, scope=scope, repos=self.repos, settings=self.settings,
                           call=state, ai_log=self.ai_logger, load_retriever=self.retriever,
                           service_set=self.services, flags=self.flags)

    def retriever(self) -> KnowledgeRetriever:
        """Loaded on first use: the embedding model takes seconds to load. Query embeddings are cached in
        Redis (qemb:*) by the retriever."""
        if self._retriever is None:
            # Imported here: the retrieval stack (numpy, the encoder) would add ~1 s to every server start.
            from retrieval.encoder import lazy_encoder_from_settings
            from retrieval.service import KnowledgeRetriever

            # the model loads on a worker thread at the first search that needs a vector, not on the event loop
            encoder = lazy_encoder_from_settings(self.settings)
            self._retriever = KnowledgeRetriever(self.stores, encoder)
        return self._retriever

    async def health(self, timeout_s: float = 2.0) -> dict[str, bool]:
        """One cheap round trip per store the tools use, each bounded by `timeout_s`."""

        async def pg(store: PostgresStore | None) -> bool:
            async with store.connection() as conn:
                return await conn.fetchval("SELECT 1") == 1

        s = self.stores
        probes = {"postgres": pg(s.postgres), "postgres_audit": pg(s.audit), "redis": s.cache.ping(),
                  "mongo": s.mongo.ping(), "opensearch": s.search.health()}

        async def bounded(coro) -> bool:
            try:
                result = await asyncio.wait_for(coro, timeout_s)
            except Exception:
                return False
            return bool(result.get("ok")) if isinstance(result, dict) else bool(result)

        results = await asyncio.gather(*(bounded(c) for c in probes.values()))
        return dict(zip(probes, results, strict=True))
