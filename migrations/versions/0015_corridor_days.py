"""Corridor-day rollup: `corridor_volume` reads one row per (UTC day, corridor, currency pair) instead of
scanning every completed remittance of its window, so its cost does not grow with the number of users.

- `corridor_day_users`: completed remittances per (day, corridor, currency pair, user). It exists for the
  distinct-user count the k-anonymity rule needs: distinct users do not add up across rows, so a cell's `users`
  changes only when one user's count there goes from 0 to 1 or back (a row's lock serialises that user's
  concurrent payments, so the transition is seen exactly once). Narrow, and no larger than the completed
  remittances themselves.
- `corridor_days`: per (day, corridor, currency pair) the transaction count, the distinct users, and the sums of
  amount, fee and destination amount, i.e. exactly the cells `AnalyticsRepository.volume_by_corridor` computes
  for `granularity="day"`, status completed. Its cells are whole UTC days, as the tool's windows are, so each
  cell's distinct-user count is the count the suppression rule tests, not a sum over days.
- Kept by two statement-level triggers on `transactions` (after INSERT, after UPDATE; transactions are never
  deleted), in the writer's own database transaction: the rollup is as current as the table it sums, for every
  writer. A statement's rows are summed first, so a bulk insert costs one upsert per cell, not per row. The seed's
  bulk path skips triggers (`session_replication_role = replica`) and calls `corridor_days_rebuild()` instead.
- `dest_currency` is stored as '' when NULL (unique keys treat NULLs as distinct). No CHECK (count >= 0): an
  upsert's proposed row is checked before its conflict is found, and a reversal proposes a negative delta.

Upgrade fills both tables from `transactions` in this migration's transaction: creating the triggers locks
`transactions` against writes until the backfill commits (seconds at a million rows), so no write is missed
or counted twice. Both tables are new and filled once, their primary keys built with them (nothing to build
CONCURRENTLY on a live table). Downgrade drops the triggers, functions and tables.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from migrations.helpers import sql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

#: A row counted by corridor_volume (its default status), and its cell.
_COUNTED = "status = 'completed' AND corridor_id IS NOT NULL"
_CELL = "date_trunc('day', created_at, 'UTC'), corridor_id, currency, COALESCE(dest_currency, '')"


def upgrade() -> None:
    sql(f"""
    CREATE TABLE corridor_day_users (
        bucket        timestamptz NOT NULL,
        corridor_id   text NOT NULL,
        currency      text NOT NULL,
        dest_currency text NOT NULL,
        user_id       uuid NOT NULL,
        transactions  integer NOT NULL,
        PRIMARY KEY (bucket, corridor_id, currency, dest_currency, user_id)
    );
    CREATE TABLE corridor_days (
        bucket            timestamptz NOT NULL,
        corridor_id       text NOT NULL,
        currency          text NOT NULL,
        dest_currency     text NOT NULL,
        transactions      bigint NOT NULL,
        users             bigint NOT NULL,
        amount_minor      bigint NOT NULL,
        fee_minor         bigint NOT NULL,
        dest_amount_minor bigint NOT NULL,
        PRIMARY KEY (bucket, corridor_id, currency, dest_currency)
    );
    CREATE INDEX corridor_days_corridor ON corridor_days (corridor_id, bucket);

    CREATE TYPE corridor_day_delta AS (
        bucket timestamptz, corridor_id text, currency text, dest_currency text, user_id uuid,
        transactions integer, amount_minor bigint, fee_minor bigint, dest_amount_minor bigint);

    -- Add a statement's deltas (rows counted now: +1 and their amounts; rows no longer counted: -1 and minus
    -- theirs). Keys are locked in one order (per-user rows, then cells), so two writers cannot deadlock here.
    CREATE FUNCTION corridor_days_apply(d corridor_day_delta[]) RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
        WITH deltas AS (
            SELECT bucket, corridor_id, currency, dest_currency, user_id, sum(transactions)::integer AS n,
                   sum(amount_minor) AS amount, sum(fee_minor) AS fee, sum(dest_amount_minor) AS dest
            FROM unnest(d) GROUP BY 1, 2, 3, 4, 5
            HAVING sum(transactions) <> 0 OR sum(amount_minor) <> 0 OR sum(fee_minor) <> 0
                OR sum(dest_amount_minor) <> 0),
        per_user AS (
            INSERT INTO corridor_day_users AS u (bucket, corridor_id, currency, dest_currency, user_id, transactions)
            SELECT bucket, corridor_id, currency, dest_currency, user_id, n FROM deltas ORDER BY 1, 2, 3, 4, 5
            ON CONFLICT (bucket, corridor_id, currency, dest_currency, user_id)
                DO UPDATE SET transactions = u.transactions + excluded.transactions
            RETURNING u.bucket, u.corridor_id, u.currency, u.dest_currency, u.user_id, u.transactions)
        INSERT INTO corridor_days AS c (bucket, corridor_id, currency, dest_currency, transactions, users,
                                        amount_minor, fee_minor, dest_amount_minor)
        SELECT d.bucket, d.corridor_id, d.currency, d.dest_currency, sum(d.n),
               -- the user's count went 0 -> n (new now) or n -> 0 (gone now)
               count(*) FILTER (WHERE d.n > 0 AND p.transactions = d.n)
                 - count(*) FILTER (WHERE d.n < 0 AND p.transactions = 0),
               sum(d.amount), sum(d.fee), sum(d.dest)
        FROM deltas d JOIN per_user p USING (bucket, corridor_id, currency, dest_currency, user_id)
        GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (bucket, corridor_id, currency, dest_currency) DO UPDATE SET
            transactions = c.transactions + excluded.transactions, users = c.users + excluded.users,
            amount_minor = c.amount_minor + excluded.amount_minor, fee_minor = c.fee_minor + excluded.fee_minor,
            dest_amount_minor = c.dest_amount_minor + excluded.dest_amount_minor;
    END $$;

    -- As the owner: writers (kredete_app) need no rights on the rollup, and nobody else can write it.
    CREATE FUNCTION corridor_days_follow() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
        SET search_path = public, pg_temp AS $$
    DECLARE
        d corridor_day_delta[];
    BEGIN
        IF TG_OP = 'INSERT' THEN
            SELECT array_agg(ROW({_CELL}, user_id, 1, amount_minor, fee_minor,
                                 COALESCE(dest_amount_minor, 0))::corridor_day_delta)
            INTO d FROM new_rows WHERE {_COUNTED};
        ELSE
            SELECT array_agg(x) INTO d FROM (
                SELECT ROW({_CELL}, user_id, 1, amount_minor, fee_minor,
                           COALESCE(dest_amount_minor, 0))::corridor_day_delta AS x FROM new_rows WHERE {_COUNTED}
                UNION ALL
                SELECT ROW({_CELL}, user_id, -1, -amount_minor, -fee_minor,
                           -COALESCE(dest_amount_minor, 0))::corridor_day_delta FROM old_rows WHERE {_COUNTED}) s;
        END IF;
        IF d IS NOT NULL THEN
            PERFORM corridor_days_apply(d);
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER corridor_days_insert AFTER INSERT ON transactions REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION corridor_days_follow();
    CREATE TRIGGER corridor_days_update AFTER UPDATE ON transactions
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION corridor_days_follow();

    -- Both tables from scratch (the migration, and the seed's bulk path, which skips the triggers).
    CREATE FUNCTION corridor_days_rebuild() RETURNS void LANGUAGE sql AS $$
        TRUNCATE corridor_day_users, corridor_days;
        INSERT INTO corridor_day_users (bucket, corridor_id, currency, dest_currency, user_id, transactions)
        SELECT {_CELL}, user_id, count(*) FROM transactions WHERE {_COUNTED} GROUP BY 1, 2, 3, 4, 5;
        INSERT INTO corridor_days (bucket, corridor_id, currency, dest_currency, transactions, users,
                                   amount_minor, fee_minor, dest_amount_minor)
        SELECT {_CELL}, count(*), count(DISTINCT user_id), sum(amount_minor), sum(fee_minor),
               COALESCE(sum(dest_amount_minor), 0)
        FROM transactions WHERE {_COUNTED} GROUP BY 1, 2, 3, 4;
    $$;
    SELECT corridor_days_rebuild();

    REVOKE EXECUTE ON FUNCTION corridor_days_apply(corridor_day_delta[]), corridor_days_rebuild() FROM PUBLIC;
    -- The cells are what the agent's analytics read (roles: 0006); the per-user rows stay with the owner.
    GRANT SELECT ON corridor_days TO kredete_app, kredete_agent_ro;
    """)


def downgrade() -> None:
    sql("""
    DROP TRIGGER corridor_days_insert ON transactions;
    DROP TRIGGER corridor_days_update ON transactions;
    DROP FUNCTION corridor_days_rebuild();
    DROP FUNCTION corridor_days_follow();
    DROP FUNCTION corridor_days_apply(corridor_day_delta[]);
    DROP TYPE corridor_day_delta;
    DROP TABLE corridor_days, corridor_day_users;
    """)
