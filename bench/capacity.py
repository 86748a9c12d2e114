"""The capacity report at scale: `kredete capacity report` on a dataset seeded to N transactions.

    .venv/bin/python -m bench.capacity [--transactions 1000000] [--skip-mongo] [--skip-documents]

Seeds a dataset of its own (`capacitybench`: PostgreSQL and Mongo database `kredete_capacitybench`, index and
bucket prefix `kredete-capacitybench`) with `kredete seed --users N/10` (10 transactions per user, so 1M
transactions are 100,000 users), reused when one of the same size exists, then runs the report on it. Nothing
is ingested into OpenSearch (its indexes would be the dataset's only after `kredete ingest`), so the search
store reads as empty here. Results: bench/results/capacity.json (the report plus how the data was made) and
bench/results/capacity.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from config.paths import REPO_ROOT
from evals.harness import KREDETE, Dataset

RESULTS = Path(__file__).parent / "results"
PER_USER = 10
console = Console(width=None if sys.stdout.isatty() else 140)


def kredete(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([KREDETE, *args], env=env, capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"kredete {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def prepare(ds: Dataset, skip: list[str]) -> float | None:
    """Seed the dataset unless one of this size and shape exists; seconds it took (None: reused)."""
    marker = {"users": ds.users, "seed": ds.seed, "skip": sorted(skip)}
    if ds.marker.exists() and json.loads(ds.marker.read_text()) == marker and asyncio.run(ds._exists()):
        console.log(f"reusing {ds.db} ({ds.users:,} users)")
        return None
    ds.marker.unlink(missing_ok=True)
    t = time.monotonic()
    asyncio.run(ds._recreate_databases())
    kredete(["db", "migrate"], ds.env)
    with console.status(f"seeding {ds.users:,} users ({ds.users * PER_USER:,} transactions)"):
        kredete(["seed", "--users", str(ds.users), "--seed", str(ds.seed),
                 "--transactions-per-user", str(PER_USER), *skip], ds.env)
    seconds = time.monotonic() - t
    ds.marker.parent.mkdir(parents=True, exist_ok=True)
    ds.marker.write_text(json.dumps(marker))
    console.log(f"seeded in {seconds:.0f} s")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transactions", type=int, default=1_000_000)
    ap.add_argument("--skip-mongo", action="store_true", help="do not seed the credit store")
    ap.add_argument("--skip-documents", action="store_true", help="do not put documents into S3")
    args = ap.parse_args()
    from kredete import stack

    stack.up(console=console)
    skip = [f for f, on in (("--skip-mongo", args.skip_mongo), ("--skip-documents", args.skip_documents)) if on]
    ds = Dataset("capacitybench", users=max(1, args.transactions // PER_USER), seed=42)
    seed_s = prepare(ds, skip)
    with tempfile.TemporaryDirectory() as out:
        t = time.monotonic()
        proc = kredete(["capacity", "report", "--out", out], {**ds.env, "COLUMNS": "150"})
        report_s = time.monotonic() - t
        body = json.loads((Path(out) / "capacity.json").read_text())
        RESULTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(out) / "capacity.png", RESULTS / "capacity.png")
    result = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
              "transactions": ds.users * PER_USER, "users": ds.users, "seeded": skip or ["everything"],
              "seed_seconds": seed_s, "report_seconds": round(report_s, 1), "report": body}
    (RESULTS / "capacity.json").write_text(json.dumps(result, indent=2) + "\n")
    console.print(proc.stdout)
    console.print(f"report took {report_s:.1f} s; wrote {RESULTS / 'capacity.json'} and {RESULTS / 'capacity.png'}")


if __name__ == "__main__":
    main()
