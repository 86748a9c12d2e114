"""`kredete serve --transport http --workers 2`: two processes on one port both serve calls (stateless sessions),
a worker killed with SIGKILL is replaced while the other keeps answering, and one scrape of /metrics counts the
calls of every worker (prometheus-client's multiprocess mode), the killed one's included."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from config.paths import REPO_ROOT, local_dir
from config.ports import free_port
from evals.harness import KREDETE, http_session, token_for
from tests.e2e.conftest import E2E_EXEMPT_SUBJECT

pytestmark = pytest.mark.timeout(900)  # the e2e dataset may be built in this test's setup


def _children(pid: int) -> set[int]:
    """Live worker processes of the uvicorn supervisor `pid` (its spawned children, not the resource tracker)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
            if fields[1] == str(pid) and fields[0] != "Z" and b"spawn_main" in cmdline:
                out.add(int(stat.parent.name))
    return out


def _established_on(pid: int, port: int) -> int:
    """TCP connections of process `pid` established on local `port` (from /proc: no extra dependency)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "01" and cols[9] in inodes:
                    count += 1
    return count


@contextlib.contextmanager
def _workers_server(env: dict[str, str], workers: int) -> Iterator[tuple[subprocess.Popen, int]]:
    port = free_port()
    log = local_dir() / "e2e-http-workers.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([KREDETE, "serve", "--transport", "http", "--port", str(port), "--workers",
                                 str(workers)], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 240
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    if len(_children(proc.pid)) == workers:
                        break
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "workers did not start"
                time.sleep(0.3)
            yield proc, port
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


async def _calls(url: str, settings, transaction: str, clients: int, hold: asyncio.Event | None = None) -> list:
    """`clients` concurrent sessions, one get_transaction each; with `hold`, they keep their connection open
    until it is set."""
    token = token_for(settings, "support_agent", subject=E2E_EXEMPT_SUBJECT)

    async def one() -> bool:
        async with http_session(url, token) as s:
            res = await s.call_tool("get_transaction", {"transaction_id": transaction})
            if hold is not None:
                await hold.wait()
            return not res.is_error

    return await asyncio.gather(*(one() for _ in range(clients)))


async def _serves(url: str, settings, tx: str, port: int, pid: int, deadline: float,
                  made: list[int] | None = None) -> bool:
    """Batches of eight held sessions until worker `pid` holds one of their connections (all calls must succeed);
    each call made is appended to `made`."""
    while time.monotonic() < deadline:
        hold = asyncio.Event()
        task = asyncio.ensure_future(_calls(url, settings, tx, 8, hold))
        got = False
        for _ in range(20):
            await asyncio.sleep(0.25)
            if got := _established_on(pid, port) > 0:
                break
        hold.set()
        results = await task
        assert all(results)
        if made is not None:
            made.extend(1 for _ in results)
        if got:
            return True
    return False


def _scrapes(port: int, n: int = 6) -> list[tuple[float, set[int]]]:
    """`n` scrapes of /metrics, each on a new connection (so the kernel spreads them over the workers): the
    allowed get_transaction calls counted, and the worker pids whose gauges the scrape shows."""
    out = []
    for _ in range(n):
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30, headers={"Connection": "close"}).text
        calls, pids = 0.0, set()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "kredete_tool_calls_total" and s.labels.get("tool") == "get_transaction":
                    assert s.labels["decision"] == "allowed"
                    calls += s.value
                if family.name == "kredete_store_breaker_state":
                    pids.add(int(s.labels["pid"]))
        out.append((calls, pids))
    return out


async def test_two_workers_serve_calls_and_a_killed_worker_is_replaced(e2e_env, e2e_settings, facts):
    env = {**e2e_env, "KREDETE_RATE_LIMIT_EXEMPT_SUBJECTS": E2E_EXEMPT_SUBJECT}
    tx = str(facts.bob_transaction)
    made: list[int] = []
    with _workers_server(env, 2) as (proc, port):
        url = f"http://127.0.0.1:{port}/mcp"
        workers = _children(proc.pid)
        # Stateless sessions: whichever worker holds a client's connection answers its calls, and the kernel
        # hands new connections to both.
        deadline = time.monotonic() + 120
        for w in sorted(workers):
            assert await _serves(url, e2e_settings, tx, port, w, deadline, made), f"worker {w} served no call"
        # Whichever worker answers, a scrape counts every call of both and shows both workers' gauges.
        assert _scrapes(port) == [(len(made), workers)] * 6

        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        assert all(await _calls(url, e2e_settings, tx, 4))  # the other worker keeps answering
        made.extend([1] * 4)
        deadline = time.monotonic() + 240
        for _ in range(480):  # the supervisor checks its workers twice a second
            if len(_children(proc.pid)) == 2 and victim not in _children(proc.pid):
                break
            await asyncio.sleep(0.5)
        replacement = _children(proc.pid) - workers
        assert len(replacement) == 1 and victim not in _children(proc.pid), "the supervisor started a new worker"
        assert await _serves(url, e2e_settings, tx, port, replacement.pop(), deadline, made), "the new worker serves"
        # The killed worker's counts stay in the totals; its gauges are gone (swept by the new worker).
        assert _scrapes(port) == [(len(made), _children(proc.pid))] * 6
