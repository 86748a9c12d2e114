"""End-to-end: a seeded data tier in its own databases, the MCP server as a real process, real MCP clients.

The e2e data lives apart from the dev data (`kredete_e2e` database, `kredete_e2e` Mongo database,
`kredete-e2e` index prefix) so the suite can reseed it without touching anything else.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from uuid import UUID

import pytest

from config.paths import REPO_ROOT
from config.settings import Settings
from evals.harness import Dataset, http_session, token_for
from evals.harness import http_server as harness_http_server

__all__ = ["fresh_client_ip", "http_session", "stdio_session", "token_for"]

E2E_USERS = 30
E2E_SEED = 20261125
SERVER = str(REPO_ROOT / "server.py")
E2E_DATASET = Dataset(name="e2e", users=E2E_USERS, seed=E2E_SEED,
                      ingest=("kb", "credit", "disputes", "plans", "s3"))
#: The settings that point a server process at the e2e dataset.
E2E_ENV = {k: v for k, v in E2E_DATASET.env.items() if k in ("KREDETE_POSTGRES_DB", "KREDETE_MONGO_DB",
                                                             "KREDETE_INDEX_PREFIX", "KREDETE_S3_BUCKET_PREFIX",
                                                             "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}


@pytest.fixture(scope="session")
def e2e_env(stack) -> dict[str, str]:
    """Fresh e2e databases, migrated, seeded and indexed through the same CLI an operator uses."""
    E2E_DATASET.prepare(fresh=True)
    return E2E_DATASET.env


@pytest.fixture(scope="session")
def e2e_settings(e2e_env) -> Settings:
    return E2E_DATASET.settings()


@dataclass
class Facts:
    """Known records of the seeded e2e data, found through the service adapters."""

    alice: UUID  # a customer with transactions, a credit report and a dispute
    bob: UUID  # another such customer
    alice_names: list[str]
    bob_names: list[str]
    bob_transaction: UUID
    bob_dispute: str
    alice_dispute: str
    coach: str
    coach_users: list[UUID]
    unassigned_user: UUID
    all_names: list[str] = field(default_factory=list)


@pytest.fixture(scope="session")
async def facts(e2e_settings) -> Facts:
    from stores.registry import connect
    from stores.scope import RowScope

    stores = await connect(("postgres", "mongo"), settings=e2e_settings)
    try:
        async with stores.postgres.connection() as conn:
            rows = await conn.fetch(
                "SELECT t.user_id, count(*) AS n FROM transactions t GROUP BY t.user_id HAVING count(*) >= 3 "
                "ORDER BY t.user_id")
            with_tx = [r["user_id"] for r in rows]
            coach_rows = await conn.fetch("SELECT coach_subject, user_id FROM coach_assignments ORDER BY user_id")
        disputed = sorted({d["user_id"] for d in await stores.mongo.db.dispute_cases.find(
            {}, {"user_id": 1}).to_list(None)})
        reported = {d["user_id"] for d in await stores.mongo.db.credit_reports.find({}, {"user_id": 1}).to_list(None)}
        candidates = [u for u in with_tx if str(u) in disputed and str(u) in reported]
        from services.documents import DocumentService

        documents = DocumentService.from_settings(e2e_settings)
        try:
            documented = {u for u in candidates if await documents.list_documents(u, limit=1)}
        finally:
            await documents.close()
        # Customers with documents in S3 first: get_document_link needs one of theirs (stable otherwise).
        candidates.sort(key=lambda u: u not in documented)
        assert len(candidates) >= 2, "seed must give at least two customers with transactions, reports and disputes"
        alice, bob = candidates[0], candidates[1]
        from stores.crypto import FieldCipher
        from stores.postgres.users import UserRepository

        users = UserRepository(stores.postgres,
                               cipher=FieldCipher.from_settings(e2e_settings))
        known = await users.known_pii([alice, bob])
        async with stores.postgres.connection() as conn:
            bob_tx = await conn.fetchval("SELECT id FROM transactions WHERE user_id = $1 ORDER BY created_at DESC "
                                         "LIMIT 1", bob)
            every = await conn.fetch("SELECT id FROM users ORDER BY id")
        all_known = await users.known_pii([r["id"] for r in every])
        bob_d = await stores.mongo.db.dispute_cases.find_one({"user_id": str(bob)})
        alice_d = await stores.mongo.db.dispute_cases.find_one({"user_id": str(alice)})
        coach = coach_rows[0]["coach_subject"]
        coach_users = [r["user_id"] for r in coach_rows if r["coach_subject"] == coach]
        unassigned = next(UUID(u) for u in sorted(reported) if UUID(u) not in coach_users)
        _ = RowScope
        return Facts(alice=alice, bob=bob, alice_names=known[alice]["names"], bob_names=known[bob]["names"],
                     bob_transaction=bob_tx, bob_dispute=bob_d["_id"], alice_dispute=alice_d["_id"], coach=coach,
                     coach_users=coach_users, unassigned_user=unassigned,
                     all_names=sorted({n for v in all_known.values() for n in v["names"]}))
    finally:
        await stores.close()


#: A subject the e2e HTTP server does not rate limit (KREDETE_RATE_LIMIT_EXEMPT_SUBJECTS), as benchmarks use.
E2E_EXEMPT_SUBJECT = "e2e-rate-exempt"
#: The tests stand in for a reverse proxy on loopback: the e2e server believes their X-Forwarded-For (so each
#: test can be a client address of its own). A server without this setting believes no forwarded header.
BEHIND_LOCAL_PROXY = {"KREDETE_TRUSTED_PROXIES": "127.0.0.1"}


@pytest.fixture(scope="session")
def http_server(e2e_env) -> str:
    """`kredete serve --transport http` as a real process, behind the tests as its proxy; yields its MCP URL."""
    env = {**e2e_env, **BEHIND_LOCAL_PROXY, "KREDETE_RATE_LIMIT_EXEMPT_SUBJECTS": E2E_EXEMPT_SUBJECT}
    with harness_http_server(env, log_name="e2e-http-server") as url:
        yield url


def fresh_client_ip() -> str:
    """A client address of its own (sent as X-Forwarded-For to a server that trusts 127.0.0.1 as its proxy), so
    the per-IP failure windows in the shared Redis start empty on every run."""
    import ipaddress
    import secrets

    return str(ipaddress.IPv6Address(0x20010DB8 << 96 | secrets.randbits(64)))


@contextlib.asynccontextmanager
async def stdio_session(env: dict[str, str], token: str | None) -> AsyncIterator:
    """An SDK ClientSession over stdio, launching `python server.py` with KREDETE_TOKEN."""
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    server_env = {k: v for k, v in env.items() if k.startswith(("KREDETE_", "HF_", "TRANSFORMERS_", "PATH", "HOME"))}
    if token is not None:
        server_env["KREDETE_TOKEN"] = token
    else:
        server_env.pop("KREDETE_TOKEN", None)
    params = StdioServerParameters(command=sys.executable, args=[SERVER], env=server_env, cwd=str(REPO_ROOT))
    with open(os.devnull, "w") as devnull:  # noqa: ASYNC230 - opening /dev/null does not block
        async with stdio_client(params, errlog=devnull) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session
