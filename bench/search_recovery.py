"""Recovery time of the search indexes: restore from an S3 snapshot vs rebuild from the sources of truth.

    python -m bench.search_recovery [--skip-rebuild]

On the stack's search (one node or the ha cluster) and its own indexes (`KREDETE_INDEX_PREFIX`, filled by
`kredete seed`, `kredete ingest` and `kredete search sync`), in one run:

1. snapshot every index into the backups bucket (`kredete search snapshot`),
2. lose them (delete every index of the prefix) and restore the snapshot (`kredete search restore-snapshot`),
3. lose them again and rebuild from PostgreSQL and the credit store (`kredete ingest --reset`, then
   `kredete search reindex` of each Postgres- and Mongo-fed index), as an operator would,

timing each with the commands operators run (their start-up and the embedding model's load included).
Document counts are compared after each. Results: bench/results/search_recovery.json and a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results" / "search_recovery.json"
KREDETE = [str(Path(sys.executable).parent / "kredete")]
FED = ("transactions", "users", "audit-logs", "credit-reports", "disputes")


def kredete(*args: str) -> float:
    """Run a kredete command; return its wall time (raise with its output when it fails)."""
    t = time.perf_counter()
    proc = subprocess.run([*KREDETE, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"kredete {' '.join(args)} failed:\n{(proc.stdout + proc.stderr)[-2000:]}")
    return time.perf_counter() - t


async def counts() -> dict[str, int]:
    from stores.registry import connect

    stores = await connect(("search",))
    try:
        s = stores.search
        await s.os.indices.refresh(index=f"{s.prefix}-*")
        out = {}
        for name in ("chunks", *FED):
            alias = s.index_name(name)
            out[name] = int((await s.os.count(index=alias))["count"]) if await s.os.indices.exists(index=alias) else 0
        return out
    finally:
        await stores.close()


async def lose_everything() -> list[str]:
    """Delete every index of the prefix (the disaster): aliases go with them."""
    from stores.registry import connect

    stores = await connect(("search",))
    try:
        s = stores.search
        names = sorted(await s.os.indices.get(index=f"{s.prefix}-*", expand_wildcards="all"))
        await s.os.indices.delete(index=f"{s.prefix}-*", expand_wildcards="all", ignore_unavailable=True)
        return names
    finally:
        await stores.close()


async def cluster_shape() -> dict[str, Any]:
    from stores.registry import connect

    stores = await connect(("search",))
    try:
        h = await stores.search.cluster_health()
        size = await stores.search.os.cat.indices(index=f"{stores.search.prefix}-*", format="json", bytes="b",
                                                  h="index,store.size,pri.store.size")
        return {"cluster": h.cluster_name, "nodes": h.number_of_nodes, "replicas": stores.search.replica_count(),
                "primary_bytes": sum(int(i["pri.store.size"] or 0) for i in size),
                "store_bytes": sum(int(i["store.size"] or 0) for i in size)}
    finally:
        await stores.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-rebuild", action="store_true", help="measure the snapshot path only")
    args = ap.parse_args()
    console = Console()
    before = asyncio.run(counts())
    if not before["chunks"]:
        raise SystemExit("no knowledge index: run `kredete seed`, `kredete ingest` and `kredete search sync` first")
    out: dict[str, Any] = {"shape": asyncio.run(cluster_shape()), "documents": before}
    name = f"bench-{int(time.time())}"
    out["snapshot_s"] = round(kredete("search", "snapshot", name), 1)
    lost = asyncio.run(lose_everything())
    out["indexes_lost"] = len(lost)
    out["restore_s"] = round(kredete("search", "restore-snapshot", name), 1)
    out["after_restore"] = asyncio.run(counts())
    if not args.skip_rebuild:
        asyncio.run(lose_everything())
        steps = {"ingest --reset": kredete("ingest", "--reset", "--no-resume")}
        for index in FED:
            steps[f"search reindex {index}"] = kredete("search", "reindex", index)
        out["rebuild_steps_s"] = {k: round(v, 1) for k, v in steps.items()}
        out["rebuild_s"] = round(sum(steps.values()), 1)
        out["after_rebuild"] = asyncio.run(counts())
        out["rebuild_over_restore"] = round(out["rebuild_s"] / out["restore_s"], 1)
    out["loadavg"] = [f"{x:.1f}" for x in __import__("os").getloadavg()]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")

    t = Table(title=f"search recovery on {out['shape']['cluster']} ({out['shape']['nodes']} node(s), "
                    f"{out['shape']['replicas']} replica(s), {out['shape']['primary_bytes'] / 1e6:.1f} MB of "
                    f"primaries, load {' '.join(out['loadavg'])})")
    for col in ("path", "seconds", "documents after (chunks / transactions / audit)"):
        t.add_column(col)
    t.add_row("snapshot to S3", f"{out['snapshot_s']:.1f}", "")
    t.add_row("restore from the snapshot", f"{out['restore_s']:.1f}",
              f"{out['after_restore']['chunks']} / {out['after_restore']['transactions']} / "
              f"{out['after_restore']['audit-logs']}")
    if "rebuild_s" in out:
        t.add_row("rebuild from PostgreSQL + credit store", f"{out['rebuild_s']:.1f}",
                  f"{out['after_rebuild']['chunks']} / {out['after_rebuild']['transactions']} / "
                  f"{out['after_rebuild']['audit-logs']}")
    t.add_row("before (reference)", "", f"{before['chunks']} / {before['transactions']} / {before['audit-logs']}")
    console.print(t)


if __name__ == "__main__":
    main()
