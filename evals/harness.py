"""Shared by `bench/` and `evals/`: an isolated seeded dataset, the MCP server as a real process, MCP clients.

Mirrors what tests/e2e/conftest.py does for the e2e suite, with its own names so runs never touch the dev
or e2e data: a dataset `name` lives in Postgres database `kredete_<name>`, Mongo database `kredete_<name>`
and index prefix `kredete-<name>`. It is built through the same CLI an operator uses (`kredete db migrate`,
`kredete seed`, `kredete ingest`) and reused on the next run when it was built with the same parameters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from config.paths import REPO_ROOT, local_dir
from config.ports import free_port
from config.settings import Settings, resolve
from evals.listening import listening_process

KREDETE = str(Path(sys.executable).with_name("kredete"))
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _run(args: list[str], env: dict[str, str], timeout: float = 1800) -> None:
    proc = subprocess.run([KREDETE, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"kredete {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


#: Runs `kredete` commands one after another in one interpreter, through the typer app the `kredete` entry point
#: runs (same commands, same options): a process per command imported the CLI, the stores and their drivers
#: again each time. Each finished command prints one `STEP_DONE` line (its seconds) on stderr.
STEP_DONE = "kredete-step-done"
_STEPS = f"""
import json, sys, time
from kredete.cli import app
for args in json.loads(sys.argv[1]):
    started = time.monotonic()
    code = app(args, prog_name="kredete", standalone_mode=False)  # a typer.Exit comes back as its code
    if code not in (None, 0):
        sys.exit(f"kredete {{' '.join(args)}} failed ({{code}})")
    print("{STEP_DONE}", round(time.monotonic() - started, 1), *args, file=sys.stderr, flush=True)
"""


def _run_steps(steps: list[list[str]], env: dict[str, str], log: Callable[[str], None],
               timeout: float = 1800) -> None:
    """`kredete <step>` for each step, in order, in one process; stops at the first that fails."""
    proc = subprocess.run([sys.executable, "-c", _STEPS, json.dumps(steps)], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False, cwd=REPO_ROOT)
    for line in proc.stderr.splitlines():
        if line.startswith(STEP_DONE):
            seconds, *args = line.split()[1:]
            log(f"  kredete {' '.join(args)}: {seconds} s")
    if proc.returncode != 0:
        raise RuntimeError(f"building the dataset failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


@dataclass(frozen=True)
class Dataset:
    """A named, isolated copy of the data tier (own Postgres DB, Mongo DB and index prefix)."""

    name: str
    users: int = 200
    seed: int = 42
    #: `kredete ingest --only` sources to index (empty: no ingestion).
    ingest: tuple[str, ...] = ()
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def db(self) -> str:
        return f"kredete_{self.name}"

    @property
    def index_prefix(self) -> str:
        return f"kredete-{self.name}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KREDETE_POSTGRES_DB": self.db, "KREDETE_MONGO_DB": self.db,
                "KREDETE_INDEX_PREFIX": self.index_prefix, "KREDETE_S3_BUCKET_PREFIX": self.index_prefix,
                **OFFLINE_ENV, **self.extra_env}

    def settings(self) -> Settings:
        return resolve(Settings(postgres_db=self.db, mongo_db=self.db, index_prefix=self.index_prefix,
                                s3_bucket_prefix=self.index_prefix))

    @property
    def marker(self) -> Path:
        return local_dir() / "harness" / f"{self.name}.json"

    def _spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"users": self.users, "seed": self.seed, "ingest": sorted(self.ingest)}
        if self.ingest:  # the index's vectors are this encoder's; servers run with another refuse to query it
            from retrieval.bundled_model import encoder_name

            spec["encoder"] = encoder_name(Settings().encoder)  # the vectors' name: a new export rebuilds
        return spec

    async def _exists(self) -> bool:
        from stores.postgres.databases import database_exists

        return await database_exists(resolve().postgres_url.get_secret_value(), self.db)

    def is_ready(self) -> bool:
        """Built earlier with the same parameters (marker file), the database is still there and its schema is
        the migrations' head (a dataset built before a newer migration is rebuilt, not reused as it is)."""
        try:
            spec = json.loads(self.marker.read_text())
        except (OSError, ValueError):
            return False
        return spec == self._spec() and asyncio.run(self._exists()) and self._schema_current()

    def _schema_current(self) -> bool:
        from stores.errors import StoreError
        from stores.postgres import migrate

        try:
            return not migrate.status(self.settings().postgres_url.get_secret_value()).pending
        except StoreError:
            return False

    def prepare(self, *, fresh: bool = False, log: Callable[[str], None] = lambda _m: None) -> bool:
        """Build the dataset unless an identical one exists; True when it was (re)built."""
        if not fresh and self.is_ready():
            log(f"dataset {self.name}: reusing {self.db} ({self.users} users, seed {self.seed})")
            asyncio.run(self.current_rates())
            return False
        with contextlib.suppress(FileNotFoundError):
            self.marker.unlink()
        log(f"dataset {self.name}: recreating {self.db}")
        asyncio.run(self._recreate_databases())
        steps = [["db", "migrate"], ["seed", "--users", str(self.users), "--seed", str(self.seed)]]
        if "s3" in self.ingest:
            # Ingestion reads the documents as its own S3 principal, which `s3 setup` creates for this prefix.
            steps.append(["s3", "setup"])
        if self.ingest:
            steps.append(["ingest", "--reset", *(a for src in self.ingest for a in ("--only", src))])
        log(f"dataset {self.name}: {'; '.join('kredete ' + ' '.join(step) for step in steps)}, in one process")
        _run_steps(steps, self.env, log)
        log(f"dataset {self.name}: current FX rates")
        asyncio.run(self.current_rates())
        self.marker.parent.mkdir(parents=True, exist_ok=True)
        self.marker.write_text(json.dumps(self._spec()))
        return True

    async def current_rates(self) -> int:
        """Observe every enabled corridor's pair again now, at its latest seeded rate, as a rates feed would
        (through `FXService.record_rate`, evicting the cached rate): the seed's rates end on a fixed day and a
        quote refuses a rate older than a day. Returns how many rates it recorded."""
        from datetime import UTC, datetime

        from services.caching import fx_key, read_through
        from services.fx import FXService
        from stores.errors import NotFound
        from stores.registry import connect

        settings = self.settings()
        stores = await connect(("postgres", "cache"), settings=settings)
        cache = read_through(stores.cache, settings)
        try:
            fx, now, recorded = FXService(stores.postgres, cache=cache), datetime.now(UTC), 0
            for pair in sorted({(c.source_currency, c.dest_currency) for c in await fx.corridors()}):
                try:
                    latest = await fx.fx.latest_rate(*pair)
                except NotFound:
                    continue
                await fx.record_rate({"base_currency": pair[0], "quote_currency": pair[1], "rate": latest.rate,
                                      "source": "harness", "observed_at": now})
                await cache.invalidate(fx_key(*pair))
                recorded += 1
            return recorded
        finally:
            await cache.close()
            await stores.close()

    async def _recreate_databases(self) -> None:
        from stores.mongo.client import MongoStore
        from stores.postgres.databases import recreate_database

        base = resolve()
        await recreate_database(base.postgres_url.get_secret_value(), self.db)
        mongo = await MongoStore(base.mongo_url.get_secret_value(), self.db).connect()
        try:
            await mongo.drop_database()
        finally:
            await mongo.close()


# --- tokens -----------------------------------------------------------------------------------------

def token_for(settings: Settings, role: str, *, user: UUID | None = None, subject: str | None = None,
              ttl_s: int = 3600) -> str:
    from guards.bearer import issue_token

    return issue_token(role, subject or (f"user:{user}" if user else f"{role}-harness"), user_id=user, ttl_s=ttl_s,
                       settings=settings)


class RotatingTokens:
    """A fresh token subject every `every` calls, so a long run of a staff role stays under the per-principal
    rate limits (the limiter keys staff on their subject; customers on their user id, so rotating a customer's
    subject gains nothing: exempt it with KREDETE_RATE_LIMIT_EXEMPT_SUBJECTS instead). `run_id` keeps subjects distinct
    across runs (the Redis windows are shared)."""

    def __init__(self, settings: Settings, role: str, *, every: int = 50, prefix: str = "bench",
                 user: UUID | None = None) -> None:
        self.settings, self.role, self.every, self.user = settings, role, every, user
        self.prefix = f"{prefix}-{os.getpid()}-{int(time.time())}"
        self._n = 0

    def next(self) -> str:
        subject = f"{self.prefix}-{self._n}"
        self._n += 1
        return token_for(self.settings, self.role, user=self.user, subject=subject)


# --- the server as a process ------------------------------------------------------------------------

@contextlib.contextmanager
def http_server(env: dict[str, str], *, log_name: str = "harness-http-server", timeout_s: float = 60,
                args: Sequence[str] = ()) -> Iterator[str]:
    """`kredete serve --transport http [args]` as a real process in its own process group; yields its MCP URL."""
    port = free_port()
    argv = [KREDETE, "serve", "--transport", "http", "--port", str(port), *args]
    with listening_process(argv, port=port, env=env, log_path=local_dir() / f"{log_name}.log", what="server",
                           timeout_s=timeout_s, cwd=REPO_ROOT):
        yield f"http://127.0.0.1:{port}/mcp"


@contextlib.asynccontextmanager
async def http_session(url: str, token: str | None) -> AsyncIterator[Any]:
    """An SDK ClientSession over streamable HTTP with a bearer token."""
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with create_mcp_http_client(headers=headers) as http, streamable_http_client(url, http_client=http) as (
            read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def error_text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


# --- numbers ----------------------------------------------------------------------------------------

def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (numpy's default); 0.0 for no values."""
    if not values:
        return 0.0
    xs = sorted(values)
    k = (len(xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def latency_summary(ms: Sequence[float], wall_s: float | None = None) -> dict[str, float]:
    """p50/p95/p99/mean in ms; calls/s from the wall time when given, else from the sum of latencies."""
    total = wall_s if wall_s is not None else sum(ms) / 1000
    return {"n": len(ms), "p50_ms": round(percentile(ms, 50), 3), "p95_ms": round(percentile(ms, 95), 3),
            "p99_ms": round(percentile(ms, 99), 3), "mean_ms": round(sum(ms) / len(ms), 3) if ms else 0.0,
            "calls_per_s": round(len(ms) / total, 1) if total else 0.0}
