"""A small concurrent MCP load that keeps going through outages and remembers every call.

Each worker is one customer (own token subject, so its audit rows are found by subject) that calls, in turn,
a tool that needs the credit store (`get_credit_report`), one that needs only PostgreSQL
(`get_wallet_balances`) and the write `log_feedback` (acknowledged ids kept, to be looked for later), and
any further tools a scenario names (`SEARCH`: `search_knowledge`, which needs OpenSearch). A worker that loses
its server (killed) reconnects to whatever `target()` names then.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

from config.settings import Settings

#: Which store each tool of the load needs (besides the audit database every call needs).
NEEDS: dict[str, str] = {"get_credit_report": "mongo", "get_wallet_balances": "postgres",
                         "log_feedback": "local_queue"}
#: The retrieval tool (OpenSearch, besides the credit store's conversation claim and the query encoder).
SEARCH = "search_knowledge"
#: What must never reach an agent: driver names, addresses, stack traces, SQL.
LEAK = re.compile(r"Traceback|File \"|asyncpg|pymongo|motor|redis\.|opensearch|127\.0\.0\.1|localhost|"
                  r"SELECT |INSERT |dial tcp|:\d{4,5}\b", re.IGNORECASE)


@dataclass(frozen=True)
class Call:
    worker: int
    tool: str
    started: float  # wall clock (epoch s)
    ended: float
    ok: bool
    text: str  # the error text the agent saw ("" when ok)
    transport: bool = False  # no answer at all (the server was down or killed mid-call)
    feedback_id: str | None = None
    server: str = ""  # the MCP URL that answered

    @property
    def latency_s(self) -> float:
        return self.ended - self.started


@dataclass
class McpLoad:
    settings: Settings
    users: list[UUID]
    target: Callable[[], str | None]  # the MCP URL to use now (None: no server yet)
    run_id: str
    pause_s: float = 0.05
    call_timeout_s: float = 30.0
    #: The tools each worker calls in turn (default: `NEEDS`).
    tools: tuple[str, ...] = tuple(NEEDS)
    #: `search_knowledge`'s mode (None: the server's default, hybrid; "bm25" needs no query encoder).
    search_mode: str | None = None
    calls: list[Call] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def subject(self, worker: int) -> str:
        return f"faults-{self.run_id}-{worker}"

    @property
    def subjects(self) -> list[str]:
        return [self.subject(i) for i in range(len(self.users))]

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(i, u)) for i, u in enumerate(self.users)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _worker(self, i: int, user: UUID) -> None:
        from evals.harness import http_session, token_for

        token = token_for(self.settings, "customer", user=user, subject=self.subject(i))
        tools = list(self.tools)
        n = 0
        while not self._stop.is_set():
            url = self.target()
            if url is None:
                await asyncio.sleep(0.1)
                continue
            started = time.time()
            try:
                async with http_session(url, token) as session:
                    while not self._stop.is_set():
                        if self.target() != url:
                            break  # a new server: reconnect
                        tool = tools[n % len(tools)]
                        n += 1
                        args = self._arguments(tool, i)
                        started = time.time()
                        result = await asyncio.wait_for(session.call_tool(tool, args), self.call_timeout_s)
                        text = " ".join(getattr(c, "text", "") for c in result.content) if result.is_error else ""
                        # The SDK prefixes a tool's refusal with this; what follows is the server's message.
                        text = text.removeprefix(f"Error executing tool {tool}: ")
                        fid = (result.structured_content or {}).get("feedback_id") if not result.is_error else None
                        self.calls.append(Call(i, tool, started, time.time(), not result.is_error, text,
                                               feedback_id=fid, server=url))
                        await asyncio.sleep(self.pause_s)
            except asyncio.CancelledError:
                raise
            except BaseException:
                self.calls.append(Call(i, "transport", started, time.time(), False, "", transport=True))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 0.2)

    def _arguments(self, tool: str, worker: int) -> dict[str, object]:
        if tool == "log_feedback":
            return {"conversation_id": f"faults-{self.run_id}-{worker}", "score": 4, "label": "helpful"}
        if tool == SEARCH:  # help articles only: the answer does not depend on the worker's own records
            return {"query": "how do I dispute an error on my credit report", "k": 3, "doc_types": ["kb"],
                    "conversation_id": f"faults-{self.run_id}-{worker}",
                    **({"mode": self.search_mode} if self.search_mode else {})}
        return {}

    # --- what the agent saw ---------------------------------------------------------------------------
    def between(self, t0: float, t1: float, tool: str | None = None) -> list[Call]:
        """Calls answered that started in [t0, t1) (of `tool`, or any tool)."""
        return [c for c in self.calls if not c.transport and t0 <= c.started < t1
                and (tool is None or c.tool == tool)]

    async def wait_calls(self, t0: float, per_tool: int, timeout_s: float, server: str | None = None) -> None:
        """Until every tool has `per_tool` answered calls started at or after `t0` (on `server`), or timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            counts = {t: 0 for t in self.tools}
            for c in self.calls:
                if not c.transport and c.started >= t0 and (server is None or c.server == server):
                    counts[c.tool] += 1
            if min(counts.values()) >= per_tool:
                return
            await asyncio.sleep(0.1)

    def acknowledged_feedback(self) -> list[str]:
        return [c.feedback_id for c in self.calls if c.ok and c.feedback_id]


async def warm_search(settings: Settings, url: str, user: UUID, subject: str, timeout_s: float = 120.0) -> bool:
    """One `search_knowledge` call (answered or refused): the server loads its query encoder on the first one, and
    blocks meanwhile. True when it answered with data."""
    from evals.harness import http_session, token_for

    token = token_for(settings, "customer", user=user, subject=subject)
    with contextlib.suppress(Exception):
        async with http_session(url, token) as session:
            result = await asyncio.wait_for(session.call_tool(SEARCH, {"query": "warm up", "k": 1,
                                                                       "doc_types": ["kb"]}), timeout_s)
            return not result.is_error
    return False


def served_share(calls: list[Call]) -> float:
    """The share of `calls` answered with data (1.0 for none)."""
    return sum(c.ok for c in calls) / len(calls) if calls else 1.0
