"""A seeded data tier of its own for the data-subject-request tests: every store holds the users' data.

Own PostgreSQL database, credit-store database, index prefix and key store (a temporary file); S3 is the stack's
documents and logs buckets (the principals' grants name them), under the users' own prefixes. Users come from a
random seed per session, so their ids are new on every run. Each user with documents has data in all five
stores: payments rows, credit reports and AI logs (their own and a support agent's conversation about them),
Redis keys (rate-limit window, cached profile, a leaderboard place, a session), search documents (transactions,
users, audit log, credit reports, disputes, knowledge chunks of their documents) and sealed S3 documents.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from config.paths import REPO_ROOT
from config.settings import Settings, resolve

# Scratch payments databases and search prefixes of the other suites (retention tests).
from tests.integration.postgres.conftest import (  # noqa: F401
    cipher,
    pg_db,
    pg_stack,
    pg_template,
    service_store,
)
from tests.integration.search.conftest import own_search, search_settings, search_stack  # noqa: F401

USERS = 14
TEXT_CONVERSATION = "Customer asked about a transfer; looked up the account."


@dataclass
class DsrData:
    settings: Settings
    env: dict[str, str]
    seed: int
    user_ids: list[str]  # every seeded user
    with_documents: list[str]  # users that have S3 documents (every store holds their data)
    people: dict[str, object]  # user id -> kredete.seed.people.Person

    @property
    def without_documents(self) -> list[str]:
        """Users no test erases through `with_documents[i]` (the refusal tests pick theirs here)."""
        return [u for u in self.user_ids if u not in self.with_documents]


KREDETE = str(Path(sys.executable).parent / "kredete")


def run_cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`kredete <args>` as an operator runs it (a real process), on the dataset's settings."""
    return subprocess.run([KREDETE, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _env(settings: Settings, keystore: Path) -> dict[str, str]:
    return {**os.environ, "KREDETE_POSTGRES_DB": settings.postgres_db, "KREDETE_MONGO_DB": settings.mongo_db,
            "KREDETE_INDEX_PREFIX": settings.index_prefix, "KREDETE_KEYSTORE_PATH": str(keystore),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


async def _build(settings: Settings, seed: int) -> tuple[list[str], list[str], dict[str, object]]:
    from guards.redaction import redact
    from kredete.seed.documents import documents_for, seed_documents
    from kredete.seed.mongo import seed_credit_store_async
    from kredete.seed.payments import SeedConfig, seed_payments
    from kredete.seed.people import person
    from retrieval import sources as src
    from retrieval.encoder import encoder_from_settings
    from retrieval.index_sync import DocIndexer
    from retrieval.ingest import Ingestor
    from stores.cache import CacheStore
    from stores.crypto import FieldCipher
    from stores.mongo import MongoStore
    from stores.mongo.ai_logging import AILogger
    from stores.mongo.collections import TRACE_OBSERVATIONS
    from stores.mongo.conversations import ConversationOwners
    from stores.mongo.trace_documents import Observation
    from stores.objects.buckets import documents_bucket
    from stores.objects.principals import objects_for
    from stores.objects.sealed import open_sealed
    from stores.postgres import AuditRepository, PostgresStore
    from stores.postgres.bulk_load import direct_connection
    from stores.postgres.models import AuditEntry
    from stores.search import SearchStore

    field_cipher = FieldCipher.from_settings(settings)
    people = [person(seed, i) for i in range(USERS)]
    async with direct_connection(settings.postgres_url.get_secret_value()) as conn:
        await seed_payments(conn, SeedConfig(users=USERS, seed=seed, transactions_per_user=8), field_cipher)
    await seed_credit_store_async(settings, people, seed)
    await seed_documents(settings, people, seed, cipher=field_cipher)
    with_docs = sorted({d.user_id for d in documents_for(people, seed)})
    ids = [str(p.user_id) for p in people]

    pg = await PostgresStore(settings.postgres_url.get_secret_value()).connect()
    mongo = await MongoStore(settings.mongo_url.get_secret_value(), settings.mongo_db).connect()
    cache = await CacheStore(settings.redis_url.get_secret_value()).connect()
    search = await SearchStore(settings.opensearch_url.get_secret_value(), prefix=settings.index_prefix).connect()
    try:
        audit = AuditRepository(pg)
        logger = AILogger(mongo, redactor=lambda t: redact(t).text)
        await logger.start()
        for uid in ids:
            await audit.append(AuditEntry(actor_subject=f"user:{uid}", actor_role="customer",
                                          actor_user_id=uuid.UUID(uid), action="get_wallet_balances",
                                          decision="allowed", rows_returned=2))
            await logger.log_conversation_turn(f"conv-{uid}", uid, "user", "What is my balance?",
                                               principal_subject=f"user:{uid}")
            await logger.log_feedback(f"conv-{uid}", uid, score=1, label="helpful", comment="thanks",
                                      principal_subject=f"user:{uid}")
            # a support agent's conversation about the user (owned by nobody; names them in a tool call)
            await logger.log_conversation_turn(f"agent-conv-{uid}", "00000000-0000-0000-0000-000000000000", "tool",
                                               TEXT_CONVERSATION, principal_subject="agent-7",
                                               tool_calls=[{"name": "search_transactions",
                                                            "arguments": {"user_id": uid}}])
            # the user's conversation claimed by them, and a support agent's trace whose tool call names them
            await ConversationOwners(mongo).claim(f"conv-{uid}", f"customer:{uid}", user_id=uid)
            started = datetime.now(UTC)
            await logger.record(TRACE_OBSERVATIONS, Observation, dict(
                trace_id=f"agent-trace-{uid}", user_id="00000000-0000-0000-0000-000000000000",
                principal={"role": "support_agent", "id": "agent-7"}, kind="tool_call", name="search_transactions",
                status="allowed", arguments={"user_id": uid}, started_at=started,
                expires_at=started + timedelta(days=90)))
            r = cache.redis
            await r.set(f"rl:customer:{uid}:get_wallet_balances", "3", ex=600)
            await r.set(cache.key("profile", uid), f'{{"user_id": "{uid}", "country": "NG"}}', ex=600)
            await r.zadd(f"lb:{settings.index_prefix}:credit", {uid: 700})
            await r.hset(f"session:{settings.index_prefix}:{secrets.token_hex(8)}",
                         mapping={"user_id": uid, "device": "android"})
        await logger.stop()
        for name in ("transactions", "users", "audit-logs"):
            await DocIndexer(search, name, redact=redact, lag=0).sync(postgres=pg)
        for name in ("credit-reports", "disputes"):
            await DocIndexer(search, name, redact=redact).sync(mongo_db=mongo.db)
        ingestor = Ingestor(search, encoder_from_settings(), redact=redact)
        bucket = documents_bucket(settings.s3_bucket_prefix)
        for uid in with_docs:
            await ingestor.run(src.S3Source(objects_for(settings, "ingestion"), bucket, prefix=f"users/{uid}/",
                                            unseal=lambda k, b, m: open_sealed(field_cipher, k, b, m)), resume=False)
        await ingestor.run(src.CreditReportSource(mongo.db), resume=False)
    finally:
        for s in (search, cache, mongo, pg):
            await s.close()
    return ids, with_docs, {str(p.user_id): p for p in people}


def _seed_with_documents(at_least: int = 5, spare: int = 3) -> int:
    """A new random seed whose users include at least `at_least` with S3 documents and `spare` without (a pure
    function of it): the erasure tests take the former, the refusal tests the latter, so no two collide."""
    from kredete.seed.documents import documents_for
    from kredete.seed.people import person

    while True:
        seed = secrets.randbelow(10**9)
        have = len({d.user_id for d in documents_for([person(seed, i) for i in range(USERS)], seed)})
        if at_least <= have <= USERS - spare:
            return seed


@pytest.fixture(scope="session")
def dsr_data(stack, tmp_path_factory) -> Iterator[DsrData]:
    """The seeded dataset (built once per session), dropped at the end (S3 objects stay: object-locked)."""
    from kredete.stack.logins import grant_local_logins
    from stores.objects.setup import setup_all
    from stores.postgres import migrate
    from tests.integration.postgres.conftest import create_database, drop_database, make_urls

    tag = secrets.token_hex(4)
    name = f"kredete_dsr_{tag}"
    keystore = tmp_path_factory.mktemp("keystore") / "keys.sqlite3"
    settings = resolve(Settings(postgres_db=name, mongo_db=name, index_prefix=f"kredete-dsr-{tag}",
                                keystore_path=str(keystore)))
    urls = make_urls(name)
    create_database(urls.admin, name)
    migrate.upgrade(urls.service)
    grant_local_logins(urls.service)
    asyncio.run(setup_all(resolve()))  # principals and locked buckets (idempotent)
    seed = _seed_with_documents()
    ids, with_docs, people = asyncio.run(_build(settings, seed))
    yield DsrData(settings, _env(settings, keystore), seed, ids, with_docs, people)
    drop_database(urls.admin, name)
    asyncio.run(_drop_rest(settings))


async def _drop_rest(settings: Settings) -> None:
    from stores.mongo import MongoStore
    from stores.search import SearchStore

    mongo = await MongoStore(settings.mongo_url.get_secret_value(), settings.mongo_db).connect()
    await mongo.client.drop_database(settings.mongo_db)
    await mongo.close()
    search = await SearchStore(settings.opensearch_url.get_secret_value(), prefix=settings.index_prefix).connect()
    await search.os.indices.delete(index=f"{settings.index_prefix}-*", expand_wildcards="all",
                                   ignore_unavailable=True)
    templates = await search.os.indices.get_index_template(name=f"{settings.index_prefix}-*", ignore=404)
    for t in templates.get("index_templates", []):
        await search.os.indices.delete_index_template(name=t["name"])
    await search.close()


@pytest.fixture
async def privacy(dsr_data):
    """A PrivacyService on the dataset (one per test: its own connections)."""
    from services.privacy import PrivacyService

    svc = await PrivacyService.open(dsr_data.settings, actor="dpo-tests")
    yield svc
    await svc.close()


REASON = "DSR-4321: the customer asked to close their account and erase their data"
