"""A scratch stack of its own for the drills: they kill -9 and delete a primary for real, so never the
session's shared one. Everything runs through the `kredete` CLI in subprocesses (the operator's path), with
KREDETE_LOCAL_DIR in a temp dir and every server on a port the kernel reports free."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from config.paths import REPO_ROOT
from evals.harness import _run_steps, free_port

KREDETE = str(Path(sys.executable).with_name("kredete"))
PORT_NAMES = ("postgres", "postgres_replica", "postgres_replica2", "redis", "mongo", "mongo_debug", "opensearch",
              "opensearch_transport", "s3", "s3_console", "s3_dr", "s3_dr_console", "s3_cold", "s3_cold_console",
              "s3_audit", "prometheus", "alertmanager",
              *(f"{kind}{i}" for kind in ("ha_postgres", "ha_patroni", "etcd") for i in (1, 2, 3)),
              *(f"etcd{i}_peer" for i in (1, 2, 3)))
#: What the drills need: the primary, FerretDB (credit store), Redis (the MCP server's rate limiter), MinIO
#: (the pgBackRest repository; it brings its access-log receiver and cold tier). No replica: rebuilding one
#: after the restore is the same `stack up` path the stack tests cover, and CI time is short.
SERVERS = ("postgres", "redis", "mongo", "s3")
USERS = 5


@dataclass
class Scratch:
    env: dict[str, str]
    local: Path

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([KREDETE, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                              check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"kredete {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def py(self, code: str, timeout: float = 120) -> str:
        """Python in the scratch environment (config.ports is read at import: it must be another process)."""
        proc = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    def json_out(self, *args: str) -> dict:
        return json.loads(self.run(*args).stdout.strip().splitlines()[-1])


def scratch_stack(servers: tuple[str, ...], **env_extra: str) -> Iterator[Scratch]:
    """Start the servers on free ports in their own `.local/scratch/<id>`, migrate, seed; stop and delete."""
    # Under the repo, not /tmp: the servers' unprivileged user must be able to reach it.
    local = REPO_ROOT / ".local" / "scratch" / f"drills-{uuid.uuid4().hex[:8]}"
    local.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KREDETE_")}
    env.update({"KREDETE_LOCAL_DIR": str(local), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **env_extra})
    used: set[int] = set()
    for name in PORT_NAMES:
        port = free_port()
        while port in used:
            port = free_port()
        used.add(port)
        env[f"KREDETE_PORT_{name.upper()}"] = str(port)
    s = Scratch(env, local)
    try:
        # The operator's three commands in one process (the typer app the `kredete` entry point runs): a process
        # per command imported the CLI, the stores and their drivers again each time. One transaction per user:
        # the drills read their own writes and the books, not the seeded history.
        _run_steps([["stack", "up", *(a for n in servers for a in ("--only", n))], ["db", "migrate"],
                    ["seed", "--users", str(USERS), "--transactions-per-user", "1", "--skip-documents"]],
                   env, log=lambda _line: None, timeout=1800)
        yield s
    finally:
        subprocess.run([KREDETE, "stack", "down"], env=env, capture_output=True, timeout=300, check=False)
        shutil.rmtree(local, ignore_errors=True)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Scratch]:
    # pgBackRest reads its options from PGBACKREST_* too (the primary's archive_command inherits the stack's
    # environment): a 3 s I/O timeout makes the repository outage of the tests fail a push in seconds, where
    # the configured 10 s retried for over a minute against a refused connection.
    # archive_timeout 4 s (KREDETE_ARCHIVE_TIMEOUT_S; 15 s on a real stack): the restore drill's short load
    # still spans archived segments, so its restore replays WAL beyond the backup.
    yield from scratch_stack(SERVERS, PGBACKREST_IO_TIMEOUT="3", KREDETE_ARCHIVE_TIMEOUT_S="4")
