"""Migrations: apply all, roll all back, re-apply, same schema; every step reversible; expand/contract rules."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import psycopg
import pytest

from kredete.stack.logins import grant_local_logins
from kredete.stack.postgres import PG_BIN
from stores.postgres import migrate

VERSIONS = Path(migrate.MIGRATIONS_DIR) / "versions"


def schema_dump(url: str) -> str:
    """pg_dump --schema-only, minus comments and settings that differ between runs."""
    parts = psycopg.conninfo.conninfo_to_dict(url)
    env = {**os.environ, "PGPASSWORD": str(parts.get("password", ""))}
    out = subprocess.run([str(PG_BIN / "pg_dump"), "--schema-only", "--no-owner", "-h", str(parts["host"]),
                          "-p", str(parts["port"]), "-U", str(parts["user"]), "-d", str(parts["dbname"])],
                         env=env, capture_output=True, text=True, check=True, timeout=120).stdout
    # pg_dump >= 15.14 brackets the script with \restrict <random key>: not part of the schema.
    skip = ("--", "\\restrict", "\\unrestrict")
    return "\n".join(line for line in out.splitlines() if line.strip() and not line.startswith(skip))


def user_objects(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = "
            "'public' AND c.relname NOT LIKE 'alembic_version%' "
            "UNION ALL SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
            "WHERE n.nspname = 'public' AND t.typtype = 'e' UNION ALL SELECT p.proname "
            "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'").fetchall()
    return sorted(r[0] for r in rows)


def test_apply_rollback_reapply_gives_the_same_schema(empty_db):
    url = empty_db.service
    migrate.upgrade(url)
    first = schema_dump(url)
    assert "CREATE TABLE public.transactions" in first and "PARTITION BY RANGE (created_at)" in first
    migrate.downgrade(url, "base")
    assert user_objects(url) == []
    assert migrate.status(url).current is None
    migrate.upgrade(url)
    grant_local_logins(url)  # a role dropped by the rollback gets its login back
    assert schema_dump(url) == first


def test_every_step_down_and_up_is_reversible(empty_db):
    url = empty_db.service
    migrate.upgrade(url)
    revisions = migrate.status(url).applied
    assert len(revisions) >= 7
    dumps = {revisions[-1]: schema_dump(url)}
    for rev in reversed(revisions[:-1]):
        migrate.downgrade(url, rev)
        dumps[rev] = schema_dump(url)
    migrate.downgrade(url, "base")
    for rev in revisions:
        migrate.upgrade(url, rev)
        assert schema_dump(url) == dumps[rev], f"re-applying {rev} differs"
    grant_local_logins(url)


def test_all_nineteen_business_tables_exist(pg_db):
    expected = {"transactions", "wallets", "ledger_entries", "payment_methods", "settlements", "refunds", "fx_rates",
                "fx_orders", "stablecoin_transfers", "corridors", "hedging_positions", "liquidity_pools", "users",
                "kyc_records", "subscriptions", "notification_prefs", "audit_logs", "sessions", "coach_assignments"}
    with psycopg.connect(pg_db.service) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT relname FROM pg_class WHERE relkind IN ('r', 'p') AND relnamespace = 'public'::regnamespace "
            "AND NOT relispartition").fetchall()}
        partitioned = {r[0] for r in conn.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'p' AND relnamespace = 'public'::regnamespace").fetchall()}
    assert expected <= tables
    assert partitioned == {"transactions", "ledger_entries", "audit_logs"}


# Statements that break the previous release during a blue-green deploy. A migration may only use them
# when it declares `contract = True` (a release after the code stopped using what it removes).
_DESTRUCTIVE = re.compile(r"\b(DROP\s+(TABLE|COLUMN|VIEW|TYPE|FUNCTION)|RENAME\s+(TO|COLUMN)|ALTER\s+COLUMN\s+\w+"
                          r"\s+(TYPE|SET\s+NOT\s+NULL)|ADD\s+COLUMN\s+\w+\s+[\w\s(),]*NOT\s+NULL(?![\w\s]*DEFAULT))",
                          re.IGNORECASE)


@pytest.mark.parametrize("path", sorted(VERSIONS.glob("*.py")), ids=lambda p: p.stem)
def test_migrations_follow_expand_contract(path):
    source = path.read_text()
    assert "def downgrade() -> None:" in source, "every migration has a real downgrade"
    upgrade = source.split("def upgrade() -> None:", 1)[1].split("def downgrade() -> None:", 1)[0]
    assert "pass" not in upgrade.split() or upgrade.strip() != "pass"
    downgrade = source.split("def downgrade() -> None:", 1)[1]
    assert downgrade.strip() not in ("pass", ""), "downgrade must undo the upgrade"
    if "contract = True" not in source:
        hits = [m.group(0) for m in _DESTRUCTIVE.finditer(upgrade)]
        assert not hits, f"{path.name} is an expand migration but its upgrade has {hits}; split it into expand " \
                         "now and contract in a later release (declare `contract = True` there)"
