"""Private copies of one dataset's PostgreSQL and OpenSearch for a fault scenario to kill (never the shared
stack's servers: their users would see the outage too).

* `PrivatePostgres`: a PostgreSQL 15 server of its own (scratch dir under `.local/scratch/`, `free_port()`,
  no WAL archiving, small buffers) holding a logical copy of one dataset: the login roles (with the shared
  server's password hashes, so the stack's secrets open them), the dataset's database and its credit-store
  schema in a `ferretdb` database, so a `PrivateFerretDB` on it serves the same credit data. It is FerretDB's
  backend, as in the stack: killing it takes the credit store down too.
* `PrivateOpenSearch`: a single node of its own (free HTTP and transport ports, a small heap, no S3 client)
  holding a copy of the dataset's indices (settings, mappings, aliases and every document, vectors included).

Copies are made with the standard tools (pg_dumpall/pg_dump/pg_restore) and OpenSearch's own REST API.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from config.ports import free_port
from config.secrets import local_secrets
from kredete.stack.base import StackError, pid_alive, port_open
from kredete.stack.opensearch import OpenSearchServer
from kredete.stack.postgres import PG_BIN, PostgresPrimary, _PostgresBase

#: Settings of an index that describe that index (not its configuration): never copied.
_INDEX_OWN = {"uuid", "creation_date", "version", "provided_name", "history", "routing", "replication", "resize",
              "blocks", "verified_before_close", "creation_date_string"}


def kill9_server(server: PostgresPrimary | OpenSearchServer, timeout_s: float = 30.0) -> float:
    """kill -9 a stack server's process group (started by this process) and wait until it no longer runs nor
    listens; the wall-clock time the signal was sent (when the outage began: a call started before it may
    still have been served, its audit row committed)."""
    import signal
    import time

    pid = server.pid()
    if not pid:
        raise StackError(f"the private {server.name} is not running")
    os.killpg(pid, signal.SIGKILL)
    sent = time.time()
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)  # started by this process: reap it
    deadline = time.monotonic() + timeout_s
    while (pid_alive(pid) or port_open(server.port)) and time.monotonic() < deadline:
        time.sleep(0.05)
    server.pid_file.unlink(missing_ok=True)
    return sent


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, 0)


def with_db(url: str, db: str) -> str:
    """`url` naming database `db` instead (query string kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


def _no_password(url: str) -> str:
    """`url` without its password (which goes to the tools in PGPASSWORD, never on a command line)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{unquote(parts.username or '')}@{host}"))


def _pipe(dump: list[str], restore: list[str], env: dict[str, str], what: str, timeout: float = 600) -> None:
    """`dump | restore`; any error of either (pg_restore's are listed) raises StackError naming `what`."""
    producer = subprocess.Popen(dump, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        consumer = subprocess.run(restore, stdin=producer.stdout, capture_output=True, text=True, env=env,
                                  timeout=timeout, check=False)
    finally:
        producer.stdout.close()
        dump_err = producer.stderr.read().decode(errors="replace")
        producer.wait(timeout=60)
    if producer.returncode != 0 or consumer.returncode != 0:
        raise StackError(f"copying {what} failed: {dump_err[-800:]} {consumer.stderr[-1500:]}")


class PrivatePostgres(PostgresPrimary):
    """A primary of its own with a copy of one dataset (see the module's docstring); `kill9()` for real."""

    name = "pg-faults"
    start_timeout = 90.0

    def __init__(self, data_dir: Path) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.port = free_port()

    def prepare(self) -> None:
        fresh = not (self.pgdata / "PG_VERSION").exists()
        super().prepare()
        if fresh:  # later lines win: a scratch server needs little memory
            with (self.pgdata / "postgresql.conf").open("a") as fh:
                fh.write("shared_buffers = '32MB'\nmax_connections = 100\nwal_level = minimal\n"
                         "max_wal_senders = 0\nhot_standby = off\n")

    def command(self) -> tuple[list[str], dict[str, str]]:
        return _PostgresBase.command(self)  # no WAL archiving: this cluster is thrown away

    def after_start(self) -> None:
        return None  # no replication role or stack database: the copy brings what it needs

    def superuser_url(self, db: str = "postgres") -> str:
        return with_db(self.url(), db)

    def role_url(self, role: str, secret: str, db: str) -> str:
        return f"postgresql://{role}:{quote(local_secrets()[secret], safe='')}@127.0.0.1:{self.port}/{db}"

    def copy_dataset(self, source_url: str, db: str, mongo_db: str | None = None) -> None:
        """Copy the roles, database `db` and (`mongo_db`) that credit-store schema of the `ferretdb` database
        from the server of `source_url` (a superuser URL); the server must be running."""
        # The copy's superuser has the source's password (both from the stack's secrets): one PGPASSWORD for both.
        password = unquote(urlsplit(source_url).password or "")
        if password != local_secrets()["postgres_superuser"]:
            raise StackError("the source's superuser password is not the local stack's: cannot copy from it")
        env = {**os.environ, "PGCONNECT_TIMEOUT": "10", "PGPASSWORD": password}
        source_url, mine = _no_password(source_url), _no_password(self.superuser_url())
        # Roles first (the restored objects are owned by and granted to them); `kredete` exists already.
        roles = subprocess.run([str(PG_BIN / "pg_dumpall"), "--roles-only",
                                f"--dbname={with_db(source_url, 'postgres')}"],
                               capture_output=True, text=True, env=env, timeout=120, check=False)
        if roles.returncode != 0:
            raise StackError(f"pg_dumpall --roles-only failed: {roles.stderr[-800:]}")
        script = "\n".join(line for line in roles.stdout.splitlines() if not line.startswith("CREATE ROLE kredete;"))
        applied = subprocess.run([str(PG_BIN / "psql"), "-qAt", "-v", "ON_ERROR_STOP=1",
                                  f"--dbname={mine}"], input=script, capture_output=True, text=True,
                                 env=env, timeout=120, check=False)
        if applied.returncode != 0:
            raise StackError(f"applying the roles failed: {applied.stderr[-800:]}")
        _pipe([str(PG_BIN / "pg_dump"), "-Fc", "--create", f"--dbname={with_db(source_url, db)}"],
              [str(PG_BIN / "pg_restore"), "--create", "--exit-on-error", f"--dbname={mine}"],
              env, f"database {db}")
        if mongo_db is None:
            return
        from stores.mongo.pushdown import PLAN_CACHE_MODE

        self._psql("CREATE DATABASE ferretdb OWNER ferretdb")
        self._psql(f"ALTER DATABASE ferretdb SET plan_cache_mode = {PLAN_CACHE_MODE}")
        _pipe([str(PG_BIN / "pg_dump"), "-Fc", "-n", mongo_db, f"--dbname={with_db(source_url, 'ferretdb')}"],
              [str(PG_BIN / "pg_restore"), "--exit-on-error", f"--dbname={with_db(mine, 'ferretdb')}"],
              env, f"credit-store schema {mongo_db}")

    def ferretdb_backend_url(self) -> str:
        return self.role_url("ferretdb", "postgres_ferretdb", "ferretdb") + "?pool_max_conns=20"

    def stop(self, timeout: float = 60.0) -> None:
        """The stack's fast shutdown; the postmaster is this process's child, so it is reaped as it exits (the
        stack's stop waits for /proc/<pid> to go, which a zombie never does)."""
        import threading

        pid = self.pid()
        if pid:
            threading.Thread(target=_reap, args=(pid,), daemon=True).start()
        super().stop(timeout)

    def kill9(self) -> float:
        """kill -9 the postmaster's process group (every backend with it) and wait until it is gone: a backend
        still alive could commit what its client was already told failed. When the signal was sent."""
        return kill9_server(self)


class PrivateOpenSearch(OpenSearchServer):
    """A single node of its own with a copy of one dataset's indices; `kill9()` for real."""

    name = "opensearch-faults"
    cluster_name = "kredete-faults"
    node_name = "kredete-faults-opensearch"
    start_timeout = 300.0

    def __init__(self, data_dir: Path, heap: str = "256m") -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.transport_port = free_port()
        self.heap = heap

    def command(self) -> tuple[list[str], dict[str, str]]:
        argv, env = super().command()
        # The client compiler only: a scratch node lives for seconds of queries, and starts much sooner without
        # the optimising compiler competing for two cores.
        return [argv[0], "-XX:TieredStopAtLevel=1", *argv[1:]], env

    def has_plugin(self, name: str) -> bool:
        # No S3 client (snapshot repository settings, keystore, trust store): a scratch node takes no snapshot.
        return name != "repository-s3" and super().has_plugin(name)

    def _http(self, method: str, url: str, body: Any = None, *, ndjson: str | None = None) -> Any:
        data = ndjson.encode() if ndjson is not None else (None if body is None else json.dumps(body).encode())
        ctype = "application/x-ndjson" if ndjson is not None else "application/json"
        req = urllib.request.Request(url, data=data, method=method,  # noqa: S310 - http://127.0.0.1 only
                                     headers={"Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 - 127.0.0.1 only
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise StackError(f"OpenSearch {method} {url.split('/', 3)[-1][:80]}: {exc.code} "
                             f"{exc.read()[:500]!r}") from None

    def copy_indices(self, source: str, prefix: str, batch: int = 500) -> dict[str, int]:
        """Copy every index named `<prefix>-*` of the node at `source` (settings, mappings, aliases, documents
        with their routing); returns index -> documents copied."""
        src, dst = source.rstrip("/"), self.url()
        names = [row["index"] for row in self._http("GET", f"{src}/_cat/indices/{prefix}-*?format=json&h=index")]
        copied: dict[str, int] = {}
        for index in sorted(names):
            meta = self._http("GET", f"{src}/{index}")[index]
            settings = {k: v for k, v in meta["settings"]["index"].items() if k not in _INDEX_OWN}
            settings.update({"number_of_replicas": 0, "refresh_interval": "1s"})
            settings.pop("auto_expand_replicas", None)
            self._http("PUT", f"{dst}/{index}", {"settings": {"index": settings}, "mappings": meta["mappings"],
                                                  "aliases": meta.get("aliases", {})})
            n = 0
            page = self._http("POST", f"{src}/{index}/_search?scroll=2m",
                              {"size": batch, "sort": ["_doc"], "query": {"match_all": {}}})
            scroll = page.get("_scroll_id")
            try:
                while page["hits"]["hits"]:
                    lines = []
                    for hit in page["hits"]["hits"]:
                        action = {"_index": index, "_id": hit["_id"]}
                        if hit.get("_routing"):
                            action["routing"] = hit["_routing"]
                        lines += [json.dumps({"index": action}), json.dumps(hit["_source"])]
                    out = self._http("POST", f"{dst}/_bulk", ndjson="\n".join(lines) + "\n")
                    if out.get("errors"):
                        bad = next(i for i in out["items"] if i["index"].get("error"))
                        raise StackError(f"copying {index}: {json.dumps(bad)[:500]}")
                    n += len(page["hits"]["hits"])
                    page = self._http("POST", f"{src}/_search/scroll", {"scroll": "2m", "scroll_id": scroll})
                    scroll = page.get("_scroll_id", scroll)
            finally:
                if scroll:
                    with contextlib.suppress(StackError):
                        self._http("DELETE", f"{src}/_search/scroll", {"scroll_id": scroll})
            copied[index] = n
        self._http("POST", f"{dst}/_refresh")
        return copied

    def kill9(self) -> float:
        """kill -9 the node (its process group) and wait until it is gone. When the signal was sent."""
        return kill9_server(self)
