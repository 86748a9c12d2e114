"""The repositories the tools read through, built from the process's store adapters (the agent's
least-privilege connections): each on first use, then kept. A tool that reads through one of them needs no
wiring; a repository over another table the agent role may read gets one property here."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from config.settings import Settings, resolve
from stores.crypto import FieldCipher
from stores.errors import StoreUnavailable
from stores.mongo.conversations import ConversationOwners
from stores.mongo.credit import (
    ActionPlanRepository,
    CreditReportRepository,
    DisputeRepository,
    ScoreHistoryRepository,
)
from stores.postgres import (
    AnalyticsRepository,
    AuditRepository,
    FxRepository,
    PostgresStore,
    TransactionRepository,
    UserRepository,
    WalletRepository,
)
from stores.registry import Stores
from stores.search import SearchStore

if TYPE_CHECKING:
    from services.documents import DocumentService


def _with_host(url: str | None, host: str) -> str | None:
    if not url:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host))


class Repositories:
    def __init__(self, stores: Stores, *, settings: Settings | None = None, cipher: FieldCipher | None = None) -> None:
        self._stores = stores
        self._settings = resolve(settings) if settings is not None else stores.settings
        self._cipher = cipher

    @property
    def settings(self) -> Settings:
        return self._settings

    def _need(self, name: str) -> Any:
        store = getattr(self._stores, name)
        if store is None:
            raise StoreUnavailable(f"no {name} adapter in this process", store=name)
        return store

    @property
    def _postgres(self) -> PostgresStore:
        return self._need("postgres")

    # --- payments database (SELECT-only agent role; reads on its replica) ----------------------------------
    @cached_property
    def transactions(self) -> TransactionRepository:
        return TransactionRepository(self._postgres)

    @cached_property
    def wallets(self) -> WalletRepository:
        return WalletRepository(self._postgres)

    @cached_property
    def fx(self) -> FxRepository:
        return FxRepository(self._postgres)

    @cached_property
    def analytics(self) -> AnalyticsRepository:
        return AnalyticsRepository(self._postgres)

    @cached_property
    def audit(self) -> AuditRepository:
        """The audit trail's read side (the agent role may SELECT it; writes go through the log role)."""
        return AuditRepository(self._postgres)

    @cached_property
    def assignments(self) -> UserRepository:
        """Coach assignments (a coach's row scope); no PII."""
        return UserRepository(self._postgres)

    @cached_property
    def cipher(self) -> FieldCipher:
        """The process's field-encryption keyring and per-user key store (made on first use)."""
        return self._cipher if self._cipher is not None else FieldCipher.from_settings(self._settings)

    @cached_property
    def known_pii(self) -> UserRepository:
        """Names and addresses of users, decrypted only for the redaction layer to find and mask them: the agent
        role may read just those two ciphertext columns of `users`, and no tool returns them."""
        return UserRepository(self._postgres, cipher=self.cipher)

    # --- credit store ---------------------------------------------------------------------------------------
    @cached_property
    def credit_reports(self) -> CreditReportRepository:
        return CreditReportRepository(self._need("mongo"))

    @cached_property
    def scores(self) -> ScoreHistoryRepository:
        return ScoreHistoryRepository(self._need("mongo"))

    @cached_property
    def disputes(self) -> DisputeRepository:
        return DisputeRepository(self._need("mongo"))

    @cached_property
    def plans(self) -> ActionPlanRepository:
        return ActionPlanRepository(self._need("mongo"))

    @cached_property
    def conversations(self) -> ConversationOwners:
        """Who owns each conversation id (the first principal that logged under it)."""
        return ConversationOwners(self._need("mongo"))

    # --- search ---------------------------------------------------------------------------------------------
    @property
    def search(self) -> SearchStore:
        """The search adapter (the audit-log index of `search_audit_logs`)."""
        return self._need("search")

    # --- objects ----------------------------------------------------------------------------------------------
    @cached_property
    def documents(self) -> DocumentService:
        """Customers' documents as the `documents` S3 principal: 15-minute links under one user's prefix (to the
        HTTP server's download route for sealed documents, presigned for unsealed ones), never the objects
        themselves to the agent (the server holds no other S3 credentials)."""
        from services.documents import DocumentService  # boto3's signer: built only when a tool needs it

        s, host = self._settings, self._settings.document_link_host
        if host:  # signed for the name customers download from (SigV4 signs the host)
            s = s.model_copy(update={k: _with_host(getattr(s, k), host) for k in ("s3_url", "s3_dr_url")})
        return DocumentService.from_settings(s, cipher=self.cipher)

    async def close(self) -> None:
        """Close what the repositories opened themselves (the store adapters are the process's)."""
        if "documents" in self.__dict__:
            await self.documents.close()
