"""Profile `corridor_volume` as the compliance officer at two dataset sizes, sampled by py-spy (issue 20).

    KREDETE_STACK_PROFILE=lean python -m bench.profile_corridor [--sizes 1000 100000] [--calls 300]
                                                               [--out bench/results/profile_corridor.txt]
    KREDETE_STACK_PROFILE=lean python -m bench.profile_corridor --breakdown [--sizes 1000 10000 100000]

`--breakdown` (no py-spy) says where a call's time goes, server against client: one server per size, all up at
once, called in turn; per size the rows and bytes of an answer, the client's time per call and the part of it in
the SDK's output-schema validation, the server's own time (the guard middleware, from the trace observations),
and, in-process on the largest size's real answers, each step after the read as guards/pipeline.py runs them
and what the client does with the answer (parse, validate against the published schema and the SDK's own).

One `kredete serve --transport http` on the `scale<N>` dataset of `bench.scale_mcp` (seeded already) per size, one
after the other; the compliance officer calls `corridor_volume` with the scale bench's arguments (7, 30 or 90-day
windows from 2025, half of them one corridor; the same random sequence at every size), and py-spy samples the server
during the timed calls only (see `bench.profile_calls`, whose server, sampling and summary this reuses).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.profile_calls import LIMITS, RESULTS, _drive, _sampling, report, served
from bench.scale_mcp import _window, dataset
from config.paths import REPO_ROOT, local_dir
from evals.harness import http_session, latency_summary, token_for

TOOL = "corridor_volume"


async def _corridors(settings: Any) -> list[str]:
    from stores.postgres.bulk_load import direct_connection

    async with direct_connection(settings.postgres_url.get_secret_value()) as conn:
        return [r["id"] for r in await conn.fetch("SELECT id FROM corridors WHERE enabled ORDER BY id")]


def bench_args(corridors: list[str], n: int, seed: str = "compliance_officer/corridor_volume") -> list[dict[str, Any]]:
    """`n` argument sets drawn as `bench.scale_mcp.arguments` draws them for this tool."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        lo, hi = _window(rng)
        a: dict[str, Any] = {"date_from": lo, "date_to": hi}
        if rng.random() < 0.5:
            a["corridor"] = rng.choice(corridors)
        out.append(a)
    return out


def profile(users: int, calls: int, raw: Path) -> tuple[dict[str, Any], int]:
    ds = dataset(users)
    settings = ds.settings()
    args = bench_args(asyncio.run(_corridors(settings)), 200)
    with served({**ds.env, **LIMITS}, raw.with_suffix(".log")) as (port, proc):

        async def go() -> tuple[list[float], int]:
            token = token_for(settings, "compliance_officer", subject=f"profile-corridor-{os.getpid()}")
            async with http_session(f"http://127.0.0.1:{port}/mcp", token) as s:
                rows = 0
                for a in args[:50]:
                    out = await s.call_tool(TOOL, a)
                    rows += len((out.structured_content or {}).get("rows", []))
                await _drive({"": s}, TOOL, args, 0)  # warm-up, unsampled
                with _sampling(proc.pid, raw):
                    return await _drive({"": s}, TOOL, args, calls), rows

        ms, rows = asyncio.run(go())
    return latency_summary(ms), rows


async def _server_latency(settings: Any, since: datetime, until: datetime) -> list[dict[str, Any]]:
    from stores.mongo.client import MongoStore

    mongo = await MongoStore(settings.mongo_url.get_secret_value(), settings.mongo_db, timeout=60).connect()
    try:
        return await mongo.db["trace_observations"].find(
            {"name": {"$eq": TOOL}, "started_at": {"$gte": since, "$lt": until}},
            {"latency_ms": 1, "output_bytes": 1}).to_list(None)
    finally:
        await mongo.close()


def _p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def breakdown(sizes: list[int], calls: int) -> str:
    """Server against client for `calls` calls per size (see the module's docstring)."""
    settings = {n: dataset(n).settings() for n in sizes}
    args = {n: bench_args(asyncio.run(_corridors(settings[n])), 200) for n in sizes}
    with contextlib.ExitStack() as stack:
        servers = {n: stack.enter_context(served({**dataset(n).env, **LIMITS},
                                                 local_dir() / f"breakdown-{n}.log")) for n in sizes}
        ports = {n: port for n, (port, _) in servers.items()}

        async def go() -> tuple[dict[int, dict[str, list[float]]], dict[str, Any]]:
            stats: dict[int, dict[str, list[float]]] = {n: {k: [] for k in ("ms", "validate_ms", "rows", "bytes")}
                                                        for n in sizes}
            answers: list[dict[str, Any]] = []
            async with contextlib.AsyncExitStack() as ast:
                sessions = {}
                for n in sizes:
                    token = token_for(settings[n], "compliance_officer", subject=f"breakdown-{os.getpid()}")
                    s = await ast.enter_async_context(http_session(f"http://127.0.0.1:{ports[n]}/mcp", token))
                    sessions[n] = s
                    s.validate_tool_result = _timed(s.validate_tool_result, stats[n]["validate_ms"])
                schemas = {t.name: t.output_schema for t in (await sessions[sizes[-1]].list_tools()).tools}
                for i in range(10 + calls):
                    for n in sizes[i % len(sizes):] + sizes[:i % len(sizes)]:
                        t = time.perf_counter()
                        out = await sessions[n].call_tool(TOOL, args[n][i % len(args[n])])
                        ms = (time.perf_counter() - t) * 1000
                        if out.is_error:
                            raise RuntimeError(f"{TOOL} failed: {out.content}")
                        if i < 10:
                            stats[n]["validate_ms"].pop()
                            continue
                        body = out.structured_content or {}
                        stats[n]["ms"].append(ms)
                        stats[n]["rows"].append(len(body.get("rows", [])))
                        stats[n]["bytes"].append(len(json.dumps(body, separators=(",", ":"))))
                        if n == sizes[-1]:
                            answers.append(body)
                until = datetime.now(UTC)
                cpu = {n: await _cpu_per_call(sessions[n], args[n], servers[n][1].pid, min(calls, 100)) for n in sizes}
            return stats, {"answers": answers, "schema": schemas[TOOL], "cpu": cpu, "until": until}

        since = datetime.now(UTC)
        load0 = os.getloadavg()[0]
        stats, got = asyncio.run(go())
        load1 = os.getloadavg()[0]
        time.sleep(2)  # the trace recorder writes its observations in the background
        server = {n: asyncio.run(_server_latency(settings[n], since, got["until"])) for n in sizes}
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT)
    lines = [f"# corridor_volume, server against client ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, git "
             f"{head.stdout.strip()}, 1-min load {load0:.1f} -> {load1:.1f} on {os.cpu_count()} cores; {calls} timed "
             "calls per size, sizes called in turn; p50 unless said)", "",
             "size     rows  bytes  client ms  client validate ms  server ms (n)  client - server ms"]
    for n in sizes:
        st, lat = stats[n], [d["latency_ms"] for d in server[n]]
        lines.append(f"{n:<8} {statistics.mean(st['rows']):4.1f} {_p50(st['bytes']):6.0f}  {_p50(st['ms']):9.2f}  "
                     f"{_p50(st['validate_ms']):18.3f}  {_p50(lat):6.2f} ({len(lat):3d})  "
                     f"{_p50(st['ms']) - _p50(lat):10.2f}")
    lines += ["", "CPU ms per call (each size alone, calls in a row; the client: this process, the trace recorder's "
              "store writes included):", "size     " + "  ".join(f"{k:>9}" for k in got["cpu"][sizes[0]])]
    lines += [f"{n:<8} " + "  ".join(f"{v:9.2f}" for v in got["cpu"][n].values()) for n in sizes]
    full = [a for a in got["answers"] if len(a.get("rows", [])) >= 40]
    lines += ["", f"In-process, the {len(full)} answers of {sizes[-1]} users with >= 40 rows, each step 300 times in "
              "turn (p50 ms per answer):"]
    lines += [f"  {k:<44} {v:.3f}" for k, v in _stages(full, got["schema"]).items()]
    return "\n".join(lines) + "\n"


def _tree_cpu_ms(root: int) -> float:
    """User + system CPU time of process `root` and its live descendants, in ms (from /proc)."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry.name)] = int(fields[1])
        ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
    tree, frontier = {root}, [root]
    while frontier:
        kids = [p for p, pp in parent.items() if pp in frontier and p not in tree]
        tree.update(kids)
        frontier = kids
    return sum(ticks.get(p, 0) for p in tree) * 1000 / os.sysconf("SC_CLK_TCK")


def _store_pids() -> dict[str, int]:
    pids = {"ferretdb": local_dir() / "mongo" / "server.pid", "postgres": local_dir() / "postgres" / "server.pid"}
    return {k: int(p.read_text().split()[0]) for k, p in pids.items() if p.exists()}


async def _cpu_per_call(session: Any, args: list[dict[str, Any]], server_pid: int, calls: int) -> dict[str, float]:
    """CPU ms per call of the client (this process), the server and the stores' processes, `calls` calls in a row
    of one size alone (the background trace writes included: waited for at the end)."""
    groups = {"server": server_pid, **_store_pids()}
    before = {k: _tree_cpu_ms(p) for k, p in groups.items()}
    client0 = time.process_time()
    for a in args[:calls]:
        await session.call_tool(TOOL, a)
    client = (time.process_time() - client0) * 1000
    await asyncio.sleep(1.5)  # the trace recorder's batch (linger 0.1 s) and its store writes
    out = {k: (_tree_cpu_ms(p) - before[k]) / calls for k, p in groups.items()}
    return {"client": client / calls, **out}


def _timed(fn: Any, into: list[float]) -> Any:
    async def timed(*a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return await fn(*a, **kw)
        finally:
            into.append((time.perf_counter() - t) * 1000)

    return timed


def _stages(answers: list[dict[str, Any]], published: dict[str, Any]) -> dict[str, float]:
    """The steps after the read on real answers, as guards/pipeline.py runs them, then the client's side."""
    from jsonschema import Draft202012Validator
    from mcp.server.mcpserver.utilities.func_metadata import StrictJsonSchema, _inline_root_ref
    from mcp_types import CallToolResult, JSONRPCResponse, TextContent
    from mcp_types.jsonrpc import jsonrpc_message_adapter
    from pydantic import TypeAdapter

    from agent_tools.tools.analytics import CorridorDayOut, CorridorVolumeOut
    from guards.budget import _COUNTED, fit_to_budget
    from guards.call import new_call_state
    from guards.output_redaction import OutputRedactor
    from guards.pipeline import _check_output, _default_render
    from guards.principal import Principal, Role
    from guards.tracing import Pending, TraceRecorder
    from guards.untrusted import wrap_free_text

    if not answers:
        return {}
    principal = Principal(subject="breakdown", role=Role.COMPLIANCE_OFFICER, token_id="breakdown-token",  # noqa: S106 - an id, not a secret
                          expires_at=2**40, issuer="i")
    redactor = OutputRedactor(None, hash_key=b"k" * 32)
    recorder = TraceRecorder(None, digest_key=b"d" * 32, transport="http")
    sdk = _inline_root_ref(TypeAdapter(CorridorVolumeOut).json_schema(schema_generator=StrictJsonSchema))
    validators = {"published": Draft202012Validator(published), "sdk": Draft202012Validator(sdk)}
    loop = asyncio.new_event_loop()
    times: dict[str, list[float]] = {}

    def step(name: str, fn: Any) -> Any:
        t = time.perf_counter()
        out = fn()
        times.setdefault(name, []).append((time.perf_counter() - t) * 1000)
        return out

    for i in range(300):
        body = answers[i % len(answers)]
        state = new_call_state(TOOL, {})
        state.principal, state.decision = principal, "allowed"
        _COUNTED.clear()  # each answer is new to the server (the bench's answers repeat here)
        rows = [dict(r) for r in body["rows"]]
        result = step("CorridorVolumeOut, one model a row", lambda rows=rows, body=body: CorridorVolumeOut(
            rows=[CorridorDayOut(**r) for r in rows], min_cell_size=body["min_cell_size"],
            suppressed_cells=body["suppressed_cells"], next_cursor=body.get("next_cursor")))
        payload = step("model_dump(mode=json)", lambda result=result: result.model_dump(mode="json"))
        payload = step("output redaction (Gate.redact)",
                       lambda p=payload, s=state: loop.run_until_complete(redactor.redact(p, s)))
        payload, _ = step("wrap_free_text", lambda p=payload: wrap_free_text(p))
        payload, _ = step("fit_to_budget (tiktoken count)", lambda p=payload: fit_to_budget(p, "rows"))
        step("_check_output (model_validate)", lambda p=payload: _check_output(CorridorVolumeOut, p))
        res = step("render + CallToolResult", lambda p=payload: CallToolResult(
            content=[TextContent(type="text", text=_default_render(TOOL, p, "rows"))], structured_content=p))
        wire = step("SDK: JSON-RPC response serialised", lambda r=res, i=i: JSONRPCResponse(
            jsonrpc="2.0", id=i, result=r.model_dump(by_alias=True, exclude_none=True)).model_dump_json(
            by_alias=True, exclude_unset=True))
        obs = Pending(id="o", kind="tool_call", started_at=datetime.now(UTC), started=0.0, meta_conversation=None,
                      meta_parent=None, session=None, state=state, result=res, trace_id="t")
        step("trace recorder documents (after the answer)", lambda o=obs: recorder.documents(o))
        msg = step("client: JSON-RPC parse + CallToolResult", lambda w=wire: CallToolResult.model_validate(
            jsonrpc_message_adapter.validate_json(w, by_name=False).result))
        for name, v in validators.items():
            step(f"client: jsonschema, {name} schema", lambda v=v, m=msg: v.is_valid(m.structured_content))
    loop.close()
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=int, default=[1000, 100000])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--out", type=Path, default=RESULTS / "profile_corridor.txt")
    ap.add_argument("--breakdown", action="store_true", help="server against client, no py-spy (see above)")
    args = ap.parse_args()
    if args.breakdown:
        text = breakdown(args.sizes, args.calls)
        print(text, flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        return
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT)
    out = [f"# corridor_volume profile ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, git "
           f"{head.stdout.strip()}, load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)\n"]
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            raw = Path(tmp) / f"corridor-{n}.txt"
            stats, rows = profile(n, args.calls, raw)
            out.append(report(f"scale{n}: compliance officer, over http ({rows / 50:.1f} rows per answer in the "
                              "first 50 argument sets)", TOOL, stats, raw))
            print(out[-1], flush=True)
    out.append(f"# load average at end {os.getloadavg()[0]:.1f}\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(out))


if __name__ == "__main__":
    main()
