"""Profile the MCP call path: one tool as one principal over streamable HTTP and stdio, sampled by py-spy.

    python -m bench.profile_calls [--calls 600] [--out bench/results/profile_after.txt] [--transport http stdio]
                                  [--tool get_transaction get_dispute ...] [--role support_agent|customer|credit_coach]
                                  [--raw DIR]

The server runs as a real process (`kredete serve`) on the bench dataset (the one `bench.tool_calls` builds);
a client of `--role` makes `--calls` sequential calls of one tool, and
`py-spy record --pid` samples the server during those calls only (not its start-up or the warm-up).
The rate limits are raised for the run (the Redis check still runs on every call).
py-spy's folded stacks are summarised per function: inclusive ("cumulative") and exclusive ("self") share
of the samples in which the server's event loop was busy (other threads and the idle loop left out), plus the
client-side latency of the calls, and those samples split by whose work they are (`split`: our code on the call's
path, our background work, the store drivers' own tasks, the MCP SDK with its transport, the loop itself), in ms
of busy samples per call. `--raw DIR` keeps py-spy's folded stacks. Needs py-spy (PyPI).

Every role reads the same users' records: those assigned to the seed's first credit coach (a customer role
spreads its calls over one session per such user, staff name the user in the arguments), so customer and staff
rows of one tool differ only by who asks. `list_disputes` as a support agent is the staff queue (no user_id).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from config.paths import REPO_ROOT
from config.ports import free_port
from evals.harness import KREDETE, Dataset, error_text, http_session, latency_summary, token_for

RESULTS = Path(__file__).parent / "results"
TOOLS = ("get_transaction", "get_dispute")
#: The tools --tool accepts (the default profiles TOOLS).
PROFILED = (*TOOLS, "get_action_plan", "get_credit_report", "get_score_history", "list_disputes")
ROLES = ("support_agent", "customer", "credit_coach")
WARMUP = 20
RATE = 100
#: A frame on every stack of the event loop running a callback or task step: its busy time.
BUSY = "Handle._run (asyncio/events.py)"
LIMITS = {"KREDETE_RATE_LIMIT_PER_TOOL": "1000000", "KREDETE_RATE_LIMIT_PER_PRINCIPAL": "1000000"}


def _migrate(env: dict[str, str]) -> None:
    """The bench dataset is reused across commits: bring its schema to this commit's migrations."""
    subprocess.run([KREDETE, "db", "migrate"], env=env, check=True, capture_output=True)


def _py_spy() -> str:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        raise SystemExit("py-spy is not installed: `uv pip install py-spy` into the venv")
    return exe


async def _coach_users(settings: Any) -> tuple[str, list[str]]:
    """The seed's first coach subject and the users assigned to it (every role profiles these users' records)."""
    from stores.postgres.bulk_load import direct_connection

    async with direct_connection(settings.postgres_url.get_secret_value()) as conn:
        rows = await conn.fetch("SELECT coach_subject, user_id FROM coach_assignments ORDER BY coach_subject, user_id")
    coach = rows[0]["coach_subject"]
    return coach, [str(r["user_id"]) for r in rows if r["coach_subject"] == coach]


async def _transactions(settings: Any, users: list[str], n: int) -> list[dict[str, str]]:
    from stores.postgres.bulk_load import direct_connection

    async with direct_connection(settings.postgres_url.get_secret_value()) as conn:
        rows = await conn.fetch("SELECT id, user_id FROM transactions WHERE user_id = ANY($1::uuid[]) "
                                "ORDER BY id LIMIT $2", [UUID(u) for u in users], n)
    return [{"transaction_id": str(r["id"]), "user_id": str(r["user_id"])} for r in rows]


async def _disputes(settings: Any, users: list[str], n: int) -> list[dict[str, str]]:
    """get_dispute's arguments for the first `n` disputes of `users` (each with the user it belongs to)."""
    from stores.mongo.client import MongoStore

    mongo = await MongoStore(settings.mongo_url.get_secret_value(), settings.mongo_db).connect()
    try:
        rows = await mongo.db.dispute_cases.find({"user_id": {"$in": users}}, {"user_id": 1}).sort("_id", 1).to_list(n)
    finally:
        await mongo.close()
    return [{"dispute_id": str(d["_id"]), "user_id": str(d["user_id"])} for d in rows]


def call_args(tool: str, role: str, users: list[str], tx: list[dict[str, str]],
              disputes: list[dict[str, str]]) -> list[dict[str, str]]:
    """Arguments for `tool`, each with the `user_id` it reads (a customer's session is picked by it and the
    argument dropped; get_transaction never takes one)."""
    if tool == "get_transaction":
        return tx
    if tool == "get_dispute":
        return disputes
    if tool == "list_disputes" and role == "support_agent":
        return [{"user_id": "", "limit": 20}]  # the queue
    return [{"user_id": u} for u in users]


async def _drive(sessions: dict[str, Any], tool: str, args: list[dict[str, str]], calls: int) -> list[float]:
    """`calls` timed calls after the warm-up; `sessions`: the customers' by user id, or one staff session ("")."""
    ms: list[float] = []
    for i in range(WARMUP + calls):
        a = dict(args[i % len(args)])
        uid = a.get("user_id", "")
        session = sessions.get(uid) or sessions[""]
        if "" not in sessions or tool == "get_transaction" or not uid:
            a.pop("user_id", None)
        t = time.perf_counter()
        res = await session.call_tool(tool, a)
        if res.is_error:
            raise RuntimeError(f"{tool} failed: {error_text(res)}")
        if i >= WARMUP:
            ms.append((time.perf_counter() - t) * 1000)
    return ms


@contextlib.asynccontextmanager
async def _sessions(open_one: Any, settings: Any, role: str, coach: str, users: list[str]):
    """{user id: session} for a customer (one token per user), else {"": the staff session}."""
    async with contextlib.AsyncExitStack() as stack:
        if role == "customer":
            yield {u: await stack.enter_async_context(open_one(token_for(settings, "customer", user=UUID(u))))
                   for u in users}
        else:
            subject = coach if role == "credit_coach" else f"profile-{role}"
            yield {"": await stack.enter_async_context(open_one(token_for(settings, role, subject=subject)))}


@contextlib.contextmanager
def served(env: dict[str, str], log_path: Path) -> Iterator[tuple[int, subprocess.Popen]]:
    """`kredete serve --transport http` on a free port, up (its port and process), stopped after the block."""
    port = free_port()
    cmd = [KREDETE, "serve", "--transport", "http", "--port", str(port)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 300  # the NER model loads at start: slow on a busy machine
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"server did not start: {log_path.read_text()[-2000:]}") from None
                    time.sleep(0.3)
            yield port, proc
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def profile_http(env: dict[str, str], settings: Any, tool: str, args: list[dict[str, str]], calls: int,
                 raw: Path, who: tuple[str, str, list[str]], sampler: Any = None) -> dict[str, Any]:
    """`calls` sequential calls over HTTP to a served process, `sampler(pid, raw)` (default: py-spy) around them."""
    sampler = sampler or _sampling
    with served(env, raw.with_suffix(".log")) as (port, proc):

        async def go() -> list[float]:
            url = f"http://127.0.0.1:{port}/mcp"
            async with _sessions(lambda token: http_session(url, token), settings, *who) as s:
                await _drive(s, tool, args, 0)  # warm-up, unsampled
                with sampler(proc.pid, raw):
                    return await _drive(s, tool, args, calls)

        ms = asyncio.run(go())
    return latency_summary(ms)


def profile_stdio(env: dict[str, str], settings: Any, tool: str, args: list[dict[str, str]], calls: int,
                  raw: Path, who: tuple[str, str, list[str]], sampler: Any = None) -> dict[str, Any]:
    """As `profile_http`, on one stdio server process (one token: a customer role reads its first user only)."""
    sampler = sampler or _sampling
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    role, coach, users = who
    if role == "customer":
        token, key = token_for(settings, "customer", user=UUID(users[0])), users[0]
        args = [a for a in args if a.get("user_id") == key]
    else:
        token, key = token_for(settings, role, subject=coach if role == "credit_coach" else "profile-stdio"), ""
    params = StdioServerParameters(command=KREDETE, args=["serve"], env={**env, "KREDETE_TOKEN": token},
                                   cwd=str(REPO_ROOT))

    async def go() -> list[float]:
        with tempfile.TemporaryFile("w+") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as s:
                await s.initialize()
                await _drive({key: s}, tool, args, 0)
                with sampler(_child_pid(), raw):
                    return await _drive({key: s}, tool, args, calls)

    return latency_summary(asyncio.run(go()))


def _child_pid() -> int:
    """The stdio server: this process's child running `kredete serve`."""
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and "serve" in (stat.parent / "cmdline").read_bytes().decode(errors="replace"):
            return int(stat.parent.name)
    raise RuntimeError("stdio server process not found")


@contextlib.contextmanager
def _sampling(pid: int, raw: Path) -> Iterator[None]:
    """py-spy attached to `pid` for the block only (start-up and warm-up are not sampled)."""
    spy = subprocess.Popen([_py_spy(), "record", "--pid", str(pid), "--format", "raw", "--rate", str(RATE),
                            "--nolineno", "-o", str(raw)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the first sampled call
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        spy.wait(timeout=60)


def summarise(raw: Path, top: int = 35) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """(samples, [(function, inclusive samples)], [(function, exclusive samples)]) from py-spy's folded stacks."""
    incl: collections.Counter[str] = collections.Counter()
    excl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        if BUSY not in frames:  # other threads (pymongo's monitors, idle executors) and the idle event loop
            continue
        n = int(count)
        total += n
        for f in set(frames):
            incl[f] += n
        excl[frames[-1]] += n
    outer = {f for f, n in incl.items() if n == total}  # on every busy stack: the loop, typer, the runner
    inc = [(f, n) for f, n in incl.most_common() if f not in outer][:top]
    return total, inc, excl.most_common(top)


#: Where our code lives (py-spy names a frame's file relative to its package root).
OURS = ("guards/", "agent_tools/", "stores/", "tools/", "services/", "retrieval/", "config/")
#: Our work done off the call's path, after the answer: the trace recorder and the AI logger's drain (the audit
#: group commit's flush is on it: a call waits for its row's commit).
BACKGROUND = ("TraceRecorder._run", "AILogger.")
#: The store drivers: a stack of theirs alone is a task of their own (redis-py sends a command in one) serving us.
DRIVERS = ("redis/", "asyncpg/", "pymongo/", "motor/")


#: The MCP SDK and the transport under it (their callees, e.g. pydantic or a socket write, count as theirs).
SDK = ("mcp/", "mcp_types/", "anyio/", "starlette/", "uvicorn/", "h11/", "sse_starlette/", "stdio_pipes.py",
       "http_writes.py")


def split(raw: Path) -> dict[str, int]:
    """Busy samples by whose work they are, from the innermost frame that is either ours or the SDK's (a library
    frame counts for its caller): `ours_on_path` (a call's guards, tool and stores), `ours_background` (the trace
    recorder and the AI logger), `sdk` (the MCP SDK, its transport and the ASGI server, ours in stdio_pipes.py and
    http_writes.py included, with what they call); `drivers` (a store driver's own task: ours too, on the call's
    path or not); `other` (the event loop's own: reading sockets, waking futures)."""
    out = {"ours_on_path": 0, "ours_background": 0, "drivers": 0, "sdk": 0, "other": 0}
    outer: set[str] | None = None
    stacks: list[tuple[list[str], int]] = []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if stack and BUSY in frames:
            stacks.append((frames, int(count)))
            outer = set(frames) if outer is None else outer & set(frames)
    for frames, n in stacks:
        inner = [f for f in frames if f not in (outer or set())]
        if any(f.startswith(BACKGROUND) for f in inner):
            out["ours_background"] += n
            continue
        owner = "other"
        for f in reversed(inner):
            file = f.rpartition("(")[2].rstrip(")")
            if file.startswith(SDK) or file.endswith(SDK[-2:]):
                owner = "sdk"
                break
            if file.startswith(OURS):
                owner = "ours_on_path"
                break
            if owner == "other" and file.startswith(DRIVERS):
                owner = "drivers"  # unless an owned frame sits further out
        out[owner] += n
    return out


def report(title: str, tool: str, stats: dict[str, Any], raw: Path) -> str:
    total, inc, exc = summarise(raw)
    parts = split(raw)
    lines = [f"== {title}: {stats['n']} sequential {tool} calls, client p50 {stats['p50_ms']:.2f} ms, "
             f"p99 {stats['p99_ms']:.2f} ms, mean {stats['mean_ms']:.2f} ms",
             f"   py-spy: {total} samples of the server's event loop busy (running a callback or task step) at "
             f"{RATE} Hz during the sampled calls; % of those",
             "   by whose work: " + ", ".join(f"{k.replace('_', ' ')} {100 * n / max(total, 1):.1f}% "
                                              f"({1000 * n / RATE / stats['n']:.2f} ms per call)"
                                              for k, n in parts.items()),
             "", "   cumulative (inclusive) % of samples  function (file)"]
    lines += [f"   {100 * n / total:6.1f}%  {f}" for f, n in inc]
    lines += ["", "   self (exclusive) % of samples  function (file)"]
    lines += [f"   {100 * n / total:6.1f}%  {f}" for f, n in exc[:20]]
    return "\n".join(lines) + "\n"


def finish(out: list[str], path: Path) -> None:
    """A report's sections, closed by the load average at its end, into `path`."""
    out.append(f"# load average at end {os.getloadavg()[0]:.1f}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out))


def git_head() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=REPO_ROOT).stdout.strip()


@dataclass
class Bench:
    """The bench dataset ready for calls: the server's environment and the records every role reads."""

    env: dict[str, str]
    settings: Any
    coach: str
    users: list[str]
    tx: list[dict[str, str]]
    disputes: list[dict[str, str]]

    @classmethod
    def prepare(cls, users: int) -> Bench:
        ds = Dataset("bench", users=users, seed=42)
        ds.prepare(log=lambda m: print(m, file=sys.stderr))
        _migrate(ds.env)
        settings = ds.settings()
        coach, seeded = asyncio.run(_coach_users(settings))
        return cls({**ds.env, **LIMITS}, settings, coach, seeded, asyncio.run(_transactions(settings, seeded, 500)),
                   asyncio.run(_disputes(settings, seeded, 500)))

    def run(self, transport: str, tool: str, role: str, calls: int, raw: Path, sampler: Any = None) -> dict[str, Any]:
        """`calls` sequential calls of `tool` as `role` over `transport`, `sampler` (default py-spy) around them."""
        go = profile_http if transport == "http" else profile_stdio
        return go(self.env, self.settings, tool, call_args(tool, role, self.users, self.tx, self.disputes), calls,
                  raw, (role, self.coach, self.users), sampler)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=600)
    ap.add_argument("--users", type=int, default=200, help="seeded users in the bench dataset")
    ap.add_argument("--transport", nargs="+", default=["http", "stdio"], choices=["http", "stdio"])
    ap.add_argument("--tool", nargs="+", default=list(TOOLS), choices=PROFILED)
    ap.add_argument("--role", default="support_agent", choices=ROLES)
    ap.add_argument("--out", type=Path, default=RESULTS / "profile_after.txt")
    ap.add_argument("--raw", type=Path, help="keep py-spy's folded stacks in this directory")
    args = ap.parse_args()
    bench = Bench.prepare(args.users)
    out = [f"# MCP call path profile ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
           f"git {git_head()}, load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)\n"]
    with tempfile.TemporaryDirectory() as tmp:
        for tool in args.tool:
            for transport in args.transport:
                raw = (args.raw or Path(tmp)) / f"{tool}-{transport}.txt"
                raw.parent.mkdir(parents=True, exist_ok=True)
                stats = bench.run(transport, tool, args.role, args.calls, raw)
                out.append(report(f"{tool} as {args.role} over {transport}", tool, stats, raw))
                print(out[-1])
    finish(out, args.out)


if __name__ == "__main__":
    main()
