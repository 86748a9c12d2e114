"""Backups and recovery at size: pgBackRest vs pg_basebackup, the restore drill's RPO/RTO, replica lag.

On the running local stack (default profile, `kredete stack up`):
  1. seed `kredete_restorebench` with the seeder of bench/seed.py (default 1M transactions), sampling both
     replicas' lag from pg_stat_replication every 0.25 s meanwhile (goal: p99 <= 1 s);
  2. a full pgBackRest backup of the cluster (compressed, encrypted, to S3 over TLS) beside a plain
     `pg_basebackup` of the same cluster in the same run (tar to a byte counter: read + transfer only);
  3. `kredete drill restore` on that dataset: RPO and RTO (goals: RPO <= 60 s, RTO <= 300 s).
With --ha: the HA profile in a scratch `.local/` on free ports: how long `stack up --profile ha` takes, and
`kredete drill failover` (goal: 0 acknowledged writes lost with the synchronous standby).
Writes bench/results/restore.json (--ha: bench/results/restore_ha.json) and prints a table.

    .venv/bin/python bench/restore.py --transactions 1000000
    .venv/bin/python bench/restore.py --ha
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from config.ports import free_port  # noqa: E402
from config.settings import resolve  # noqa: E402
from evals.harness import percentile  # noqa: E402
from kredete.seed.payments import SeedConfig, seed_payments  # noqa: E402
from stores.crypto import FieldCipher  # noqa: E402
from stores.postgres import PostgresStore, migrate  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "restore.json"
HA_RESULTS = ROOT / "bench" / "results" / "restore_ha.json"
DB = "kredete_restorebench"
KREDETE = str(Path(sys.executable).with_name("kredete"))


def _db_url(base: str, name: str) -> str:
    return base.rsplit("/", 1)[0] + "/" + name


async def sample_lag(primary: str, stop: asyncio.Event, samples: dict[str, list[float]]) -> None:
    """Every 0.1 s: replay_lag and bytes behind of every standby from pg_stat_replication (0 when caught up
    and idle), and the same lag measured at the standby (`standby_lag`, below)."""
    from config import ports
    from config.secrets import local_secrets

    store = await PostgresStore(primary).connect()
    pw = local_secrets()["postgres_superuser"]
    standbys = {name: await PostgresStore(f"postgresql://kredete:{pw}@127.0.0.1:{port}/postgres").connect()
                for name, port in (("postgres-replica", ports.POSTGRES_REPLICA),
                                   ("postgres-replica2", ports.POSTGRES_REPLICA2))}
    history: list[tuple[float, int]] = []  # (time, the primary's WAL position then)
    try:
        async with store.connection() as conn:
            while not stop.is_set():
                now = time.monotonic()
                history.append((now, int(await conn.fetchval(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"))))
                for row in await conn.fetch(
                        "SELECT application_name, COALESCE(EXTRACT(EPOCH FROM replay_lag), 0)::float8 AS lag, "
                        "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS bytes FROM pg_stat_replication"):
                    samples.setdefault(row["application_name"], []).append(row["lag"])
                    samples.setdefault(row["application_name"] + ":bytes", []).append(float(row["bytes"] or 0))
                for name, standby in standbys.items():
                    async with standby.connection() as sconn:
                        replayed = int(await sconn.fetchval(
                            "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint"))
                    samples.setdefault(name + ":at_standby", []).append(standby_lag(history, replayed, now))
                await asyncio.sleep(0.1)
    finally:
        await store.close()
        for standby in standbys.values():
            await standby.close()


def standby_lag(history: list[tuple[float, int]], replayed: int, now: float) -> float:
    """How long ago the primary's WAL was where the standby has now replayed to: 0 when it has replayed all the
    primary had at the last sample, else measured from the last sample at which the primary had not yet passed
    that position (an upper bound: the sampling interval is the resolution). `history` holds (time, primary
    position) in order. replay_lag in pg_stat_replication only moves when the standby sends a reply, which it
    does when new WAL arrives, so between bursts of writes it reads up to a second high; this reads the
    standby's own position instead."""
    if not history or replayed >= history[-1][1]:
        return 0.0
    i = bisect.bisect_right([lsn for _, lsn in history], replayed)  # first sample past the replayed position
    return now - history[max(i - 1, 0)][0]


async def seed(transactions: int, per_user: int, console: Console) -> tuple[float, dict[str, list[float]]]:
    s = resolve()
    base = s.postgres_url.get_secret_value()
    admin = await PostgresStore(_db_url(base, "postgres")).connect()
    try:
        async with admin.connection() as conn:
            await conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
            await conn.execute(f"CREATE DATABASE {DB}")
    finally:
        await admin.close()
    url = _db_url(base, DB)
    migrate.upgrade(url)
    samples: dict[str, list[float]] = {}
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_lag(_db_url(base, "postgres"), stop, samples))
    store = await PostgresStore(url, statement_timeout_ms=3_600_000, timeout=60).connect()
    t0 = time.monotonic()
    try:
        with console.status(f"seeding {transactions:,} transactions"):
            async with store.connection() as conn:
                await seed_payments(conn, SeedConfig(users=max(1, transactions // per_user), seed=42,
                                                     transactions_per_user=per_user), FieldCipher.from_settings(s))
    finally:
        await store.close()
        stop.set()
        await sampler
    return time.monotonic() - t0, samples


def cluster_bytes() -> int:
    from kredete.stack.postgres import PostgresPrimary

    return int(PostgresPrimary()._psql("SELECT sum(pg_database_size(datname)) FROM pg_database").strip())


def pg_basebackup_seconds() -> tuple[float, int]:
    """A plain pg_basebackup of the same cluster: tar on stdout into a byte counter (no disk write)."""
    from config.secrets import local_secrets
    from kredete.stack.postgres import PG_BIN, PostgresPrimary

    primary = PostgresPrimary()
    env = {**os.environ, "PGPASSWORD": local_secrets()["postgres_replicator"]}
    t0 = time.monotonic()
    proc = subprocess.Popen([str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U",
                             "replicator", "-D", "-", "-Ft", "-X", "fetch", "-c", "fast"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    total = 0
    while chunk := proc.stdout.read(1 << 20):
        total += len(chunk)
    if proc.wait() != 0:
        raise RuntimeError(f"pg_basebackup failed: {proc.stderr.read().decode()[-500:]}")
    return time.monotonic() - t0, total


def kredete(*args: str, env: dict[str, str] | None = None, timeout: float = 7200) -> subprocess.CompletedProcess:
    proc = subprocess.run([KREDETE, *args], capture_output=True, text=True, timeout=timeout, check=False,
                          env=env or os.environ.copy())
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"kredete {' '.join(args)}: {proc.stderr[-2000:]}")
    return proc


def ha_part(console: Console, users: int = 5) -> dict[str, object]:
    """The HA profile from nothing in a scratch dir: up time, then the failover drill; always torn down."""
    import shutil
    import uuid

    from config.paths import REPO_ROOT

    local = REPO_ROOT / ".local" / "scratch" / f"bench-ha-{uuid.uuid4().hex[:8]}"
    local.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KREDETE_")}
    env.update({"KREDETE_LOCAL_DIR": str(local), "KREDETE_STACK_PROFILE": "ha"})
    names = ["redis", "mongo", "mongo_debug", "s3", "s3_console", "s3_dr", "s3_dr_console", "s3_cold",
             "s3_cold_console", "s3_audit", *(f"{k}{i}" for k in ("ha_postgres", "ha_patroni", "etcd")
                                              for i in (1, 2, 3)), *(f"etcd{i}_peer" for i in (1, 2, 3))]
    chosen: set[int] = set()
    for name in names:  # distinct free ports
        port = free_port()
        while port in chosen:
            port = free_port()
        chosen.add(port)
        env[f"KREDETE_PORT_{name.upper()}"] = str(port)
    out: dict[str, object] = {}
    try:
        with console.status("stack up --profile ha (3 etcd + 3 Patroni members)"):
            t0 = time.monotonic()
            up = kredete("stack", "up", "--only", "ha-pg1", "--only", "ha-pg2", "--only", "ha-pg3", env=env)
            out["ha_up_s"] = round(time.monotonic() - t0, 1)
        if up.returncode != 0:
            out["error"] = up.stderr[-1000:]
            return out
        with console.status("FerretDB, Redis, S3, migrate, seed"):
            # S3 too: the members archive their WAL to the pgBackRest repository (without it, pushes fail and
            # the leader keeps every segment)
            kredete("stack", "up", "--only", "mongo", "--only", "redis", "--only", "s3", env=env)
            kredete("db", "migrate", env=env)
            kredete("seed", "--users", str(users), "--skip-documents", env=env)
        with console.status("drill failover"):
            drill = kredete("drill", "failover", "--users", str(users), "--load-s", "20", "--json", env=env)
        lines = drill.stdout.strip().splitlines()
        m = re.fullmatch(r"RPO=([\d.]+) RTO=([\d.]+) lost_acknowledged=(\d+)", lines[-1] if lines else "")
        report = json.loads(lines[-2]) if len(lines) >= 2 else {}
        out["drill_failover"] = {"line": lines[-1] if lines else drill.stderr[-500:], "ok": drill.returncode == 0,
                                 "rpo_s": float(m[1]) if m else None, "rto_s": float(m[2]) if m else None,
                                 "lost_acknowledged": int(m[3]) if m else None, "details": report.get("details"),
                                 "failures": report.get("failures")}
    finally:
        subprocess.run([KREDETE, "stack", "down"], env=env, capture_output=True, timeout=300, check=False)
        shutil.rmtree(local, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transactions", type=int, default=1_000_000)
    ap.add_argument("--per-user", type=int, default=10)
    ap.add_argument("--load-s", type=float, default=60.0, help="write load before the drill's cut")
    ap.add_argument("--skip-seed", action="store_true", help=f"reuse {DB} from an earlier run")
    ap.add_argument("--ha", action="store_true", help="measure the HA profile (scratch stack) instead")
    args = ap.parse_args()
    console = Console()
    if args.ha:
        ha = {**ha_part(console), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        HA_RESULTS.parent.mkdir(parents=True, exist_ok=True)
        HA_RESULTS.write_text(json.dumps(ha, indent=2) + "\n")
        console.print_json(data=ha)
        return
    result: dict[str, object] = {"transactions": args.transactions}
    if not args.skip_seed:
        seconds, samples = asyncio.run(seed(args.transactions, args.per_user, console))
        lag = {name: {"p50_s": round(percentile(v, 50), 3), "p99_s": round(percentile(v, 99), 3),
                      "max_s": round(max(v), 3), "samples": len(v)}
               for name, v in samples.items() if ":" not in name}
        at_standby = {name.removesuffix(":at_standby"): {
            "p50_s": round(percentile(v, 50), 3), "p99_s": round(percentile(v, 99), 3), "max_s": round(max(v), 3)}
            for name, v in samples.items() if name.endswith(":at_standby")}
        lag_bytes = {name.removesuffix(":bytes"): {"p99_bytes": int(percentile(v, 99)), "max_bytes": int(max(v))}
                     for name, v in samples.items() if name.endswith(":bytes")}
        result["seed_seconds"] = round(seconds, 1)
        result["replica_lag_under_seed_load"] = lag
        result["replica_lag_bytes_under_seed_load"] = lag_bytes
        result["replica_lag_at_standby_under_seed_load"] = at_standby
    elif RESULTS.exists() and (earlier := json.loads(RESULTS.read_text())).get("transactions") == args.transactions:
        # the seed (and its lag samples) of the run that made the reused database
        for key in ("seed_seconds", "replica_lag_under_seed_load", "replica_lag_bytes_under_seed_load",
                    "replica_lag_at_standby_under_seed_load"):
            if key in earlier:
                result[key] = earlier[key]
        result["seed_from_run"] = earlier.get("seed_from_run") or earlier.get("when")
    # Before the backup: the restored cluster must hold the roles' logins (the MCP server reads as the agent
    # role), as after `kredete db migrate`; migrate.upgrade alone leaves them without a password.
    from kredete.stack.logins import grant_local_logins

    grant_local_logins(_db_url(resolve().postgres_url.get_secret_value(), DB))
    size = cluster_bytes()
    result["cluster_bytes"] = size
    console.print(f"cluster: {size / 1e9:.2f} GB; pgBackRest full backup ...")
    t0 = time.monotonic()
    proc = kredete("backup", "run", "--type", "full")
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    backup = json.loads(proc.stdout.strip().splitlines()[-1])
    pgbr_s = time.monotonic() - t0
    console.print("pg_basebackup of the same cluster ...")
    base_s, base_bytes = pg_basebackup_seconds()
    result["backup"] = {
        "pgbackrest_full_s": round(pgbr_s, 1), "pgbackrest_db_bytes": backup["size_bytes"],
        "pgbackrest_repo_bytes": backup["repo_bytes"],
        "pgbackrest_mb_s": round(backup["size_bytes"] / 1e6 / pgbr_s, 1),
        "pg_basebackup_s": round(base_s, 1), "pg_basebackup_bytes": base_bytes,
        "pg_basebackup_mb_s": round(base_bytes / 1e6 / base_s, 1),
    }
    result["backup"]["ratio_pgbackrest_vs_pg_basebackup"] = round(
        result["backup"]["pgbackrest_mb_s"] / result["backup"]["pg_basebackup_mb_s"], 2)
    console.print(f"restore drill on {DB} ({args.load_s:.0f} s of load) ...")
    env = {**os.environ, "KREDETE_POSTGRES_DB": DB}
    drill = kredete("drill", "restore", "--users", "10", "--load-s", str(args.load_s), "--json", env=env)
    lines = drill.stdout.strip().splitlines()
    m = re.fullmatch(r"RPO=([\d.]+) RTO=([\d.]+) lost_acknowledged=(\d+)", lines[-1] if lines else "")
    report = json.loads(lines[-2]) if len(lines) >= 2 else {}
    result["drill_restore"] = {"line": lines[-1] if lines else drill.stderr[-500:], "ok": drill.returncode == 0,
                               "rpo_s": float(m[1]) if m else None, "rto_s": float(m[2]) if m else None,
                               "lost_acknowledged": int(m[3]) if m else None, "details": report.get("details"),
                               "failures": report.get("failures")}
    result["goals"] = {
        "rpo_le_60s": bool(m and float(m[1]) <= 60), "rto_le_300s": bool(m and float(m[2]) <= 300),
        "replica_lag_p99_le_1s": all(v["p99_s"] <= 1.0 for v in result.get("replica_lag_under_seed_load", {}).values())
        if "replica_lag_under_seed_load" in result else None,
        "replica_lag_at_standby_p99_le_1s": all(
            v["p99_s"] <= 1.0 for v in result.get("replica_lag_at_standby_under_seed_load", {}).values())
        if "replica_lag_at_standby_under_seed_load" in result else None,
    }
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    result["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    table = Table(title=f"backups and recovery, {args.transactions:,} transactions ({size / 1e9:.2f} GB cluster)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    b = result["backup"]
    table.add_row("pgBackRest full backup (lz4 + AES-256, S3 over TLS)", f"{b['pgbackrest_full_s']} s, "
                  f"{b['pgbackrest_mb_s']} MB/s")
    table.add_row("pg_basebackup (tar, no compression, no upload)", f"{b['pg_basebackup_s']} s, "
                  f"{b['pg_basebackup_mb_s']} MB/s")
    table.add_row("throughput ratio pgBackRest / pg_basebackup", str(b["ratio_pgbackrest_vs_pg_basebackup"]))
    for name, v in result.get("replica_lag_under_seed_load", {}).items():
        table.add_row(f"replay lag under the seed load, {name} p50 / p99 / max",
                      f"{v['p50_s']} / {v['p99_s']} / {v['max_s']} s")
    for name, v in result.get("replica_lag_at_standby_under_seed_load", {}).items():
        table.add_row(f"replay lag read at the standby, {name} p50 / p99 / max",
                      f"{v['p50_s']} / {v['p99_s']} / {v['max_s']} s")
    table.add_row("restore drill", str(result["drill_restore"]["line"]))
    console.print(table)
    console.print(f"results: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
