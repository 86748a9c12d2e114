"""Profile `corridor_volume` as the compliance officer at two dataset sizes, sampled by py-spy (issue 20).

    KREDETE_STACK_PROFILE=lean python -m bench.profile_corridor [--sizes 1000 100000] [--calls 300]
                                                               [--out bench/results/profile_corridor.txt]

One `kredete serve --transport http` on the `scale<N>` dataset of `bench.scale_mcp` (seeded already) per size, one
after the other; the compliance officer calls `corridor_volume` with the scale bench's arguments (7, 30 or 90-day
windows from 2025, half of them one corridor; the same random sequence at every size), and py-spy samples the server
during the timed calls only (see `bench.profile_calls`, whose server, sampling and summary this reuses).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.profile_calls import LIMITS, RESULTS, _drive, _sampling, report, served
from bench.scale_mcp import _window, dataset
from config.paths import REPO_ROOT
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=int, default=[1000, 100000])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--out", type=Path, default=RESULTS / "profile_corridor.txt")
    args = ap.parse_args()
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
