"""Does a tool cost more for a customer than for staff? The same users' records, both principals, one server,
calls interleaved call by call (the same moment, the same machine load for both).

    python -m bench.role_costs [--calls 60] [--tool get_action_plan ...] [--out bench/results/role_costs.json]

The bench dataset of `bench.profile_calls` (200 users): every role reads the records of the users assigned to the
seed's first credit coach (a customer through one session per such user, staff naming the user), so a pair's
rows differ only by who asks. Pairs: the credit tools (customer against that credit coach), the transaction and
dispute tools (customer against a support agent; a support agent's `list_disputes` is the staff queue, every
user's disputes, the others read the same users' records). Each pair alternates which principal goes first.

Why: `bench.scale_mcp` measures its principals one after the other (all of the customer's tools, then the
support agent's, ...), so under a changing machine load its rows compare moments as much as principals.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import profile_calls as pc
from config.paths import REPO_ROOT
from evals.harness import Dataset, error_text, http_session, latency_summary

RESULTS = Path(__file__).parent / "results" / "role_costs.json"
PAIRS = (("get_action_plan", "customer", "credit_coach"), ("get_credit_report", "customer", "credit_coach"),
         ("get_score_history", "customer", "credit_coach"), ("get_transaction", "customer", "support_agent"),
         ("get_dispute", "customer", "support_agent"), ("list_disputes", "customer", "support_agent"))


def _arguments(sessions: dict[str, Any], tool: str, args: dict[str, str]) -> tuple[Any, dict[str, str]]:
    """The session a call goes to and its arguments (as `profile_calls._drive` picks them)."""
    a = dict(args)
    uid = a.get("user_id", "")
    session = sessions.get(uid) or sessions[""]
    if "" not in sessions or tool == "get_transaction" or not uid:
        a.pop("user_id", None)
    return session, a


async def measure(url: str, settings: Any, pairs: list[tuple[str, str, str]], calls: int) -> dict[str, Any]:
    coach, users = await pc._coach_users(settings)
    tx = await pc._transactions(settings, users, 500)
    disputes = await pc._disputes(settings, users, 500)
    out: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as stack:
        sessions = {role: await stack.enter_async_context(
            pc._sessions(lambda token: http_session(url, token), settings, role, coach, users))
            for role in {r for _, a, b in pairs for r in (a, b)}}
        for tool, a, b in pairs:
            args = {r: pc.call_args(tool, r, users, tx, disputes) for r in (a, b)}
            ms: dict[str, list[float]] = {a: [], b: []}
            for i in range(pc.WARMUP + calls):
                for role in ((a, b) if i % 2 else (b, a)):
                    session, call = _arguments(sessions[role], tool, args[role][i % len(args[role])])
                    t0 = time.perf_counter()
                    res = await session.call_tool(tool, call)
                    dt = (time.perf_counter() - t0) * 1000
                    if res.is_error:
                        raise RuntimeError(f"{tool} as {role} failed: {error_text(res)}")
                    if i >= pc.WARMUP:
                        ms[role].append(dt)
            out[tool] = {role: latency_summary(v) for role, v in ms.items()}
            ra, rb = out[tool][a]["p50_ms"], out[tool][b]["p50_ms"]
            out[tool]["p50_ratio"] = round(ra / rb, 2)
            print(f"{tool:18s} {a} p50 {ra:7.1f} ms | {b} p50 {rb:7.1f} ms | ratio {ra / rb:.2f}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=60)
    ap.add_argument("--tool", nargs="+", default=[t for t, _, _ in PAIRS], choices=[t for t, _, _ in PAIRS])
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    ds = Dataset("bench", users=200, seed=42)
    ds.prepare(log=lambda m: print(m, file=sys.stderr))
    pc._migrate(ds.env)
    settings = ds.settings()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT)
    result: dict[str, Any] = {"run": datetime.now(UTC).isoformat(timespec="seconds"), "git": head.stdout.strip(),
                              "calls": args.calls, "load_avg_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp, pc.served({**ds.env, **pc.LIMITS}, Path(tmp) / "serve.log") as (port, _):
        pairs = [p for p in PAIRS if p[0] in args.tool]
        result["tools"] = asyncio.run(measure(f"http://127.0.0.1:{port}/mcp", settings, pairs, args.calls))
    result["load_avg_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
