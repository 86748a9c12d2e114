"""Seeding throughput: `kredete seed`'s loader vs plain COPY of the very same rows.

Three timings over one data set (default 1M transactions with their ledger entries, users and the rest):
  seeder       generate + encrypt PII + COPY into the real schema (partitions, indexes, FKs, checks,
               ledger triggers), one transaction per batch, as `kredete seed` does;
  copy-schema  the same rows, exported as binary COPY, loaded into a fresh migrated database
               (the database's integrity cost without Python generation);
  copy-plain   the same rows loaded into bare tables (columns only: no index, key, check or trigger),
               the physical limit here.
Goal: seeder within 2x of copy-plain. Writes bench/results/seed.json and prints a table.

    .venv/bin/python bench/seed.py --transactions 100000
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import platform
import secrets
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Raw drivers only for the baselines this benchmark measures the seeder against (exporting the seeded rows,
# COPY into the real schema, plain COPY into bare tables) and for creating its scratch databases; the
# seeder itself runs on the stores' bulk-load connection, as `kredete seed` does.
import asyncpg  # noqa: E402
import psycopg  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from config.settings import resolve  # noqa: E402
from kredete.seed.payments import REFERENCE_TABLES, USER_TABLES, SeedConfig, seed_payments  # noqa: E402
from stores.crypto import FieldCipher  # noqa: E402
from stores.postgres import migrate  # noqa: E402
from stores.postgres.bulk_load import direct_connection  # noqa: E402

TABLES = REFERENCE_TABLES + USER_TABLES
RESULTS = ROOT / "bench" / "results" / "seed.json"


def _db_url(base: str, name: str) -> str:
    return base.rsplit("/", 1)[0] + "/" + name


def _admin(base: str, sql: str) -> None:
    with psycopg.connect(_db_url(base, "postgres"), autocommit=True) as conn:
        conn.execute(sql)


def fresh_db(base: str, migrated: bool) -> str:
    name = f"kredete_seedbench_{secrets.token_hex(4)}"
    _admin(base, f"CREATE DATABASE {name}")
    url = _db_url(base, name)
    if migrated:
        migrate.upgrade(url)
    return url


def drop_db(url: str) -> None:
    _admin(url, f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


async def export(url: str) -> dict[str, tuple[list[str], bytes, int]]:
    """Every seeded table as binary COPY bytes (with its column list and row count)."""
    conn = await asyncpg.connect(url)
    out = {}
    try:
        for table in TABLES:
            cols = [r[0] for r in await conn.fetch(
                "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped "
                "ORDER BY attnum", table)]
            buf = io.BytesIO()
            # Wallets as the seeder inserts them: at zero, the ledger triggers fill the balances.
            select = ", ".join("0::bigint" if (table, c) == ("wallets", "balance_minor") else c for c in cols)
            await conn.copy_from_query(f"SELECT {select} FROM {table}", output=buf, format="binary")
            out[table] = (cols, buf.getvalue(), await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()
    return out


#: Parents before children, for the load into the real schema.
LOAD_ORDER = ("fx_rates", "users", "kyc_records", "subscriptions", "notification_prefs", "sessions",
              "coach_assignments", "payment_methods", "wallets", "liquidity_pools", "hedging_positions", "settlements",
              "fx_orders", "transactions", "ledger_entries", "refunds", "stablecoin_transfers")


async def load(url: str, dump: dict[str, tuple[list[str], bytes, int]], *, plain: bool) -> float:
    """COPY the dump into `url`; `plain` first makes bare tables (columns only). Returns seconds."""
    conn = await asyncpg.connect(url, command_timeout=3600)
    try:
        if plain:
            for table in TABLES:
                await conn.execute(f"CREATE TABLE plain_{table} (LIKE {table})")
        else:  # the dump holds the house wallets the migrations pre-load
            await conn.execute("DELETE FROM wallets")
        t0 = time.perf_counter()
        async with conn.transaction():
            for table in LOAD_ORDER:
                cols, data, _n = dump[table]
                await conn.copy_to_table(f"plain_{table}" if plain else table, source=io.BytesIO(data),
                                         columns=cols, format="binary")
        return time.perf_counter() - t0
    finally:
        await conn.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transactions", type=int, default=1_000_000)
    ap.add_argument("--per-user", type=int, default=10)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--keep", action="store_true", help="keep the bench databases")
    args = ap.parse_args()
    console = Console()
    settings = resolve()
    base = settings.postgres_url.get_secret_value()
    cipher = FieldCipher.from_settings(settings)
    users = max(1, args.transactions // args.per_user)
    urls = []
    try:
        seeded = fresh_db(base, migrated=True)
        urls.append(seeded)
        console.print(f"seeding {users:,} users x {args.per_user} transactions ...")
        async with direct_connection(seeded, command_timeout=3600) as conn:
            with console.status("seeder"):
                report = await seed_payments(conn, SeedConfig(users=users, seed=args.seed,
                                                              transactions_per_user=args.per_user), cipher)
        with console.status("exporting the seeded rows"):
            dump = await export(seeded)
        schema_db = fresh_db(base, migrated=True)
        urls.append(schema_db)
        with console.status("copy into the real schema"):
            copy_schema = await load(schema_db, dump, plain=False)
        plain_db = fresh_db(base, migrated=True)
        urls.append(plain_db)
        with console.status("plain copy"):
            copy_plain = await load(plain_db, dump, plain=True)
    finally:
        if not args.keep:
            for url in urls:
                drop_db(url)

    rows = {t: dump[t][2] for t in TABLES}
    total = sum(rows.values())
    tx_ledger = rows["transactions"] + rows["ledger_entries"]
    result = {
        "transactions": rows["transactions"], "ledger_entries": rows["ledger_entries"], "rows_total": total,
        "users": users, "seconds": {"seeder": round(report.seconds, 2), "copy_schema": round(copy_schema, 2),
                                    "copy_plain": round(copy_plain, 2)},
        "rows_per_s": {"seeder": round(total / report.seconds), "copy_schema": round(total / copy_schema),
                       "copy_plain": round(total / copy_plain)},
        "tx_ledger_rows_per_s_equivalent": {"seeder": round(tx_ledger / report.seconds)},
        "ratio_seeder_vs_plain_copy": round(report.seconds / copy_plain, 2),
        "ratio_schema_copy_vs_plain_copy": round(copy_schema / copy_plain, 2),
        # The same rows COPYed into the real schema (keys, indexes, triggers): what any loader of this schema
        # pays at least; reported next to the goal's stricter baseline.
        "ratio_seeder_vs_schema_copy": round(report.seconds / copy_schema, 2),
        "goal_within_2x": report.seconds <= 2 * copy_plain,
        "seeder_mode": report.mode, "seeder_phases_s": report.phases,
        "rows": rows, "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    table = Table(title=f"seed: {rows['transactions']:,} transactions + {rows['ledger_entries']:,} ledger entries "
                        f"({total:,} rows in all)")
    for col in ("path", "seconds", "rows/s", "x plain COPY"):
        table.add_column(col, justify="right" if col != "path" else "left")
    for key, label in (("seeder", "kredete seed (generate + encrypt + COPY, full schema)"),
                       ("copy_schema", "COPY same rows into the real schema"),
                       ("copy_plain", "plain COPY into bare tables")):
        secs = result["seconds"][key]
        table.add_row(label, f"{secs:.1f}", f"{result['rows_per_s'][key]:,}", f"{secs / copy_plain:.2f}")
    console.print(table)
    console.print(f"results: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
